import EventLoop
import RESP
import Routing

/// discovery: cluster — CLIENT TRACKING across shards. A tracking session relays on a dedicated
/// connection of its first shard (its invalidations arrive there as RESP3 pushes). Redis
/// remembers a key for the connection that read it and invalidates it there, so a read of a key
/// on another shard must run on a tracking connection of that shard, or the app's cache would
/// never hear that the key changed. The session therefore holds one dedicated connection per
/// other shard (`trackingShards`), opened when tracking is turned on and told the same CLIENT
/// TRACKING; its commands for keys there go the way a subscriber's do (that node's -MOVED marks
/// their place in the relayed stream, see `takeRelayedRedirection`) but run on that connection,
/// whose pushes are relayed to the client as they come.
///
/// Order: a push read from a shard's connection after a reply there reaches the client after
/// that reply (both are written as they are read, and the relayed stream waits meanwhile), so
/// an invalidation never overtakes the read it invalidates.
///
/// Not covered: tracking with REDIRECT (RESP2) reaches the redirect target from the first shard
/// only, so keys of other shards get that node's -MOVED.
extension ClientSession {
    /// Tracking as RESP3 pushes on the session's own connections, relayed (see above).
    var tracksAcrossShards: Bool {
        proxy.clustered && tracking && trackingRedirect < 0 && pin.isRelaying && pin.state == .clientState
    }

    /// A command relayed on `target` (before its bytes go): one for keys of another shard is
    /// remembered (a subscriber's, or a tracking session's); CLIENT TRACKING is told to every
    /// shard's tracking connection; CLIENT CACHING is kept for the command after it.
    func noteClusterRelayed(_ frame: RequestFrame, verb: Verb, on target: BackendConnection) {
        if pin.state == .pubsub || tracksAcrossShards { noteForeignRelayedCommand(frame, on: target) }
        if case .clientTracking = verb {
            cachingRequest = nil
            return mirrorTracking(frame, besides: target)
        }
        if frame.name == TrackingWords.client && frame.firstArgument == TrackingWords.caching && tracksAcrossShards {
            var bytes: [UInt8] = []
            connection.copyInput(from: pendingBytes, count: frame.length, into: &bytes)
            cachingRequest = bytes
        } else {
            cachingRequest = nil
        }
    }

    /// CLIENT TRACKING ON|OFF … (not REDIRECT) sent on the relayed connection: the same on each
    /// other shard's tracking connection, opened now when tracking turns on (BCAST needs every
    /// shard from the start; a read needs its shard's before it runs).
    private func mirrorTracking(_ frame: RequestFrame, besides relay: BackendConnection) {
        guard tracksAcrossShards || !trackingShards.isEmpty else { return }
        var bytes: [UInt8] = []
        connection.copyInput(from: pendingBytes, count: frame.length, into: &bytes)
        trackingRequest = bytes
        for group in proxy.groups where group !== relay.backend.group {
            if let shard = trackingShards[ObjectIdentifier(group)] {
                shard.inject(request: bytes, label: "CLIENT TRACKING")
            } else if tracking {
                _ = trackingShard(for: group)
            }
        }
    }

    /// The session's tracking connection to `group`'s master, opened (and told CLIENT TRACKING)
    /// if it has none; nil when the master cannot be reached.
    private func trackingShard(for group: ReplicationGroup) -> BackendConnection? {
        let id = ObjectIdentifier(group)
        if let shard = trackingShards[id] {
            if shard.isUsable { return shard }
            trackingShards[id] = nil
            shard.close()
        }
        guard let master = group.master, let request = trackingRequest else { return nil }
        let shard = master.acquirePinned(protocolVersion: protocolVersion, loginIndex: loginIndex)
        guard shard.isUsable else { return nil }
        shard.owner = self
        shard.relay = true
        shard.select(db)
        shard.inject(request: request, label: "CLIENT TRACKING")
        trackingShards[id] = shard
        return shard
    }

    /// Runs a relayed command that `redirection` sent elsewhere on the tracking connection of
    /// the shard it names, the relayed stream waiting for its reply. False: that shard is the
    /// relayed one's (the caller runs it as for a subscriber).
    func runOnTrackingShard(_ entry: (slot: Int, name: ShortBytes, firstArgument: ShortBytes, bytes: [UInt8], caching: [UInt8]?),
                            _ redirection: ClusterRedirection, holding relay: BackendConnection) -> Bool {
        let named = redirection.kind == .ask ? proxy.backend(at: redirection.address)?.group : nil
        guard let group = named ?? proxy.group(forSlot: redirection.slot), group !== relay.backend.group else { return false }
        relay.holdRelay()
        guard let shard = trackingShard(for: group) else {
            encoder.clear()
            encoder.error("ERR ambassador: master \(group.master?.address.description ?? "of slot \(redirection.slot)") is unavailable")
            connection.write(encoder.bytes)
            relay.releaseRelay()
            return true
        }
        if redirection.kind == .ask { shard.inject(["ASKING"], label: "ASKING") }
        if let caching = entry.caching { shard.inject(request: caching, label: "CLIENT CACHING") }
        heldForShard = relay
        shard.rawWrite(entry.bytes)
        return true
    }

    /// A frame from a shard's tracking connection: a push goes to the client at once; anything
    /// else is the reply to the command run there, after which the relayed stream goes on.
    func relayedFromShard(_ frame: ReplyFrame, from backend: Connection, on shard: BackendConnection) {
        guard trackingShards.values.contains(where: { $0 === shard }) else {
            return backend.discardInput(frame.length)  // a connection this session let go of
        }
        releaseCork()
        backend.moveInput(frame.length, to: connection)
        if frame.type != UInt8(ascii: ">"), let relay = heldForShard {
            heldForShard = nil
            relay.releaseRelay()
        }
        if connection.outputCount > Self.maxRelayOutput { backend.pauseReading() }
    }

    /// A tracking connection was lost: invalidations from its shard may be lost with it, so the
    /// client is closed, as a direct Redis's restart would close it (its cache goes with it).
    /// False: not one of them.
    func trackingShardLost(_ lost: BackendConnection) -> Bool {
        guard let entry = trackingShards.first(where: { $0.value === lost }) else { return false }
        trackingShards[entry.key] = nil
        proxy.logger.warning("client \(id): tracking connection to \(lost.backend.address) lost; closing the client (its invalidations are lost)")
        connection.close()
        return true
    }

    /// Closes the session's tracking connections (tracking ended with the session, or RESET).
    func dropTrackingShards() {
        let shards = trackingShards.values
        trackingShards = [:]
        trackingRequest = nil
        cachingRequest = nil
        heldForShard = nil
        for shard in shards { shard.close() }
    }
}

/// The words a tracking session's relayed commands are matched against, packed once.
private enum TrackingWords {
    static let client = ShortBytes("client")
    static let caching = ShortBytes("caching")
}
