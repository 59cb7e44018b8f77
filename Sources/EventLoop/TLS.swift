internal import COpenSSL
internal import CLibevent
#if canImport(Glibc)
internal import Glibc
#endif

/// How a TLS client checks the server it reached.
public enum TLSVerify: String, Sendable, CaseIterable {
    /// The chain up to a trusted CA, and the server's name (or IP address) in its certificate.
    case full
    /// The chain only: any certificate the CA signed is accepted, whatever name it carries.
    case ca
    /// Nothing: the traffic is encrypted, but the peer could be anyone (a test, never production).
    case none
}

/// The oldest TLS version a side accepts.
public enum TLSVersion: String, Sendable, CaseIterable {
    case tls12 = "1.2"
    case tls13 = "1.3"

    var protocolNumber: Int32 { self == .tls12 ? TLS1_2_VERSION : TLS1_3_VERSION }
}

/// Why a TLS context could not be made (a file that holds no certificate, a key that does not
/// match its certificate …), worded for the config error that names the key.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public var detail: String
    public init(_ detail: String) { self.detail = detail }
    public var description: String { detail }
}

/// An OpenSSL `SSL_CTX`: the certificates, keys and rules every connection made from it shares.
/// Made once per config (the files' contents are read by the config loader: a reload that sees
/// them change makes a new context, which new connections use; open ones keep theirs), and
/// shared by every worker (OpenSSL makes connections from one context on many threads).
public final class TLSContext: @unchecked Sendable {
    public enum Role: Sendable { case client, server }

    let context: OpaquePointer
    public let role: Role
    public let verify: TLSVerify
    /// The name a client sends as SNI and expects in the certificate, instead of the host it
    /// connects to (a managed service reached by IP address, or one wildcard for every node).
    public let serverName: String?
    /// The notAfter of the certificate this side presents (seconds since the epoch), if any.
    public let certificateExpiry: Int?

    /// A client context: `caPEM` (nil: the system's trust store) verifies the server; `certPEM` and
    /// `keyPEM` (both or neither) are the client certificate a server may require.
    public init(client caPEM: [UInt8]?, certPEM: [UInt8]?, keyPEM: [UInt8]?, verify: TLSVerify,
                minVersion: TLSVersion, serverName: String?) throws(TLSError) {
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw TLSError("cannot create a TLS context: \(Self.lastError())") }
        self.context = context
        role = .client
        self.verify = verify
        self.serverName = serverName
        certificateExpiry = certPEM.flatMap(Self.notAfter)
        try configure(minVersion: minVersion, certPEM: certPEM, keyPEM: keyPEM)
        // Read-ahead into 64 KiB instead of one record's 16.7 KiB: a burst of replies costs a
        // quarter of the reads (a few backend connections hold one each).
        SSL_CTX_set_default_read_buffer_len(context, 64 * 1024)
        if verify != .none {
            if let caPEM {
                try addTrusted(caPEM)
            } else if SSL_CTX_set_default_verify_paths(context) != 1 {
                throw TLSError("cannot load the system's trusted certificates: \(Self.lastError())")
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
    }

    /// A server context (the listener): `certPEM` + `keyPEM` are presented to apps; with `caPEM`
    /// every app must present a certificate that CA signed (mutual TLS).
    public init(server certPEM: [UInt8], keyPEM: [UInt8], caPEM: [UInt8]?, minVersion: TLSVersion) throws(TLSError) {
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSError("cannot create a TLS context: \(Self.lastError())") }
        self.context = context
        role = .server
        verify = caPEM == nil ? .none : .ca
        serverName = nil
        certificateExpiry = Self.notAfter(certPEM)
        try configure(minVersion: minVersion, certPEM: certPEM, keyPEM: keyPEM)
        if let caPEM {
            try addTrusted(caPEM)
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        ra_tls_server_defaults(context)
    }

    deinit { SSL_CTX_free(context) }

    private func configure(minVersion: TLSVersion, certPEM: [UInt8]?, keyPEM: [UInt8]?) throws(TLSError) {
        ra_tls_set_modes(context)
        guard ra_tls_set_min_version(context, minVersion.protocolNumber) == 1 else {
            throw TLSError("cannot set min_version \(minVersion.rawValue): \(Self.lastError())")
        }
        switch (certPEM, keyPEM) {
        case (nil, nil):
            return
        case (let cert?, let key?):
            let certificates = cert.withUnsafeBytes { ra_tls_use_chain_pem(context, $0.baseAddress, Int32($0.count)) }
            guard certificates > 0 else {
                throw TLSError(certificates == 0 ? "cert_file holds no PEM certificate" : "cert_file: \(Self.lastError())")
            }
            let matched = key.withUnsafeBytes { ra_tls_use_key_pem(context, $0.baseAddress, Int32($0.count)) }
            guard matched == 1 else {
                throw TLSError(matched == 0 ? "key_file does not match cert_file: \(Self.lastError())"
                                            : "key_file holds no PEM private key (or an encrypted one): \(Self.lastError())")
            }
        default:
            throw TLSError("cert_file and key_file go together")
        }
    }

    private func addTrusted(_ pem: [UInt8]) throws(TLSError) {
        let added = pem.withUnsafeBytes { ra_tls_add_ca_pem(context, $0.baseAddress, Int32($0.count)) }
        guard added > 0 else {
            throw TLSError(added == 0 ? "ca_file holds no PEM certificate" : "ca_file: \(Self.lastError())")
        }
    }

    static func notAfter(_ pem: [UInt8]) -> Int? {
        let seconds = pem.withUnsafeBytes { ra_tls_not_after($0.baseAddress, Int32($0.count)) }
        return seconds == 0 ? nil : Int(seconds)
    }

    /// The reason of the last OpenSSL error on this thread ("" when none); clears the queue.
    static func lastError() -> String {
        let code = ERR_peek_last_error()
        defer { ERR_clear_error() }
        guard code != 0 else { return "" }
        if let reason = ERR_reason_error_string(code) { return String(cString: reason) }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A new connection's `SSL`, on `fd`. A client expects `host` (the server name if one is
    /// set, else the host it connects to) in the server's certificate when verifying in full, and
    /// sends it as SNI unless it is an IP address.
    func makeSession(fd: Int32, host: String?) -> TLSSession? {
        guard let ssl = SSL_new(context) else { return nil }
        // Reads come from the socket; records written go to an evbuffer, sent with one writev per
        // flush however many records it holds (see `TLSSession.ciphertext`).
        guard let readBIO = BIO_new_socket(fd, BIO_NOCLOSE), let writeBIO = BIO_new(TLSSession.writeMethod) else {
            SSL_free(ssl)
            return nil
        }
        let session = TLSSession(ssl: ssl, fd: fd)
        // Unretained: the BIO is freed with the SSL, in the session's deinit.
        BIO_set_data(writeBIO, Unmanaged.passUnretained(session).toOpaque())
        SSL_set_bio(ssl, readBIO, writeBIO)
        if role == .client {
            let name = serverName ?? host
            if let name, !name.isEmpty {
                let isIP = Self.isIPAddress(name)
                if !isIP { _ = ra_tls_set_sni(ssl, name) }
                if verify == .full { _ = ra_tls_expect_host(ssl, name, isIP ? 1 : 0) }
            }
            SSL_set_connect_state(ssl)
        } else {
            SSL_set_accept_state(ssl)
        }
        return session
    }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }
}

/// One connection's `SSL`: the handshake, and records to and from the socket (see `Connection`).
final class TLSSession {
    let ssl: OpaquePointer
    /// Records OpenSSL wrote (handshake, application data, alerts), waiting for the socket.
    /// `SSL_write` into the socket would cost a `write` per record, however small; here small
    /// records gather and a flush sends them with one `writev`. A large record with nothing
    /// waiting before it goes straight to the socket instead (see `writeRecord`).
    let ciphertext: OpaquePointer
    let fd: Int32
    /// The length of an `SSL_write` that must be retried as it was (OpenSSL's rule): 0 when none.
    var pendingWrite = 0
    /// A write waits for the socket to be readable (TLS 1.2 renegotiation): the next read retries it.
    var writeWantsRead = false
    /// The record being written is not the last of this flush (set by `Connection.writeTLS`): a
    /// record written straight to the socket goes with `MSG_MORE`, so the kernel gathers a large
    /// value's records into one segment instead of sending (and waking the peer for) each.
    var moreFollows = false
    /// A record went out with `MSG_MORE` and nothing has pushed it yet (see `push()`).
    var corked = false

    init(ssl: OpaquePointer, fd: Int32) {
        self.ssl = ssl
        self.fd = fd
        ciphertext = evbuffer_new()!
    }

    /// The write BIO's body: one record (or part of one) from OpenSSL. A record of 4 KiB or more
    /// with nothing queued ahead of it is written to the socket at once, saving the copy into
    /// the evbuffer (a 64 KiB value is four records: four writes, no copy, all but the last with
    /// `MSG_MORE`, so the kernel sends one segment and wakes the peer once: 12 % less CPU per
    /// 64 KiB SET over TLS than four pushed writes); whatever the socket does not take (EAGAIN,
    /// or an error the next `writev` reports) is queued, in order.
    func writeRecord(_ data: UnsafeRawPointer, _ length: Int) -> Int32 {
        var sent = 0
        if length >= 4096 && evbuffer_get_length(ciphertext) == 0 {
            let written = Glibc.send(fd, data, length, moreFollows ? Int32(MSG_MORE) : 0)
            if written > 0 { sent = written }
            corked = moreFollows && sent == length
        }
        if sent < length {
            if evbuffer_add(ciphertext, data + sent, length - sent) != 0 { return -1 }
            corked = false  // the writev that sends the rest pushes what went before
        }
        return Int32(length)
    }

    /// Sends what `MSG_MORE` left in the kernel (a flush that ended on a record it did not write:
    /// a retried write, an error). Setting `TCP_NODELAY` pushes the pending segment at once.
    func push() {
        guard corked else { return }
        corked = false
        Socket.setNoDelay(fd)
    }

    deinit {
        SSL_free(ssl)  // frees the BIOs, then the evbuffer they point to can go
        evbuffer_free(ciphertext)
    }

    var ciphertextCount: Int { evbuffer_get_length(ciphertext) }

    /// The write BIO: appends to the session's `ciphertext` evbuffer, never blocks.
    nonisolated(unsafe) static let writeMethod: OpaquePointer = {  // made once, then only read
        let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "redis-ambassador evbuffer")!
        _ = BIO_meth_set_write(method) { bio, data, length in
            guard length > 0 else { return 0 }
            guard let bio, let data, let session = BIO_get_data(bio) else { return -1 }
            return Unmanaged<TLSSession>.fromOpaque(session).takeUnretainedValue().writeRecord(data, Int(length))
        }
        _ = BIO_meth_set_ctrl(method) { _, command, _, _ in
            // FLUSH: nothing is held back here (the connection sends the evbuffer itself).
            command == BIO_CTRL_FLUSH ? 1 : 0
        }
        _ = BIO_meth_set_create(method) { bio in
            BIO_set_init(bio, 1)
            return 1
        }
        return method
    }()

    enum Step { case done(Int), wantRead, wantWrite, closed, failed(String) }

    /// What an OpenSSL call's result means; `result` > 0 is done.
    func step(_ result: Int32) -> Step {
        if result > 0 { return .done(Int(result)) }
        let error = SSL_get_error(ssl, result)
        switch error {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            let e = errno
            let queued = TLSContext.lastError()
            if !queued.isEmpty { return .failed(queued) }
            // An EOF without close_notify: the peer closed the TCP connection.
            return e == 0 ? .closed : .failed(Socket.errnoText(e))
        default:
            let reason = TLSContext.lastError()
            let verified = SSL_get_verify_result(ssl)
            if verified != X509_V_OK, let text = X509_verify_cert_error_string(Int(verified)) {
                return .failed("\(reason.isEmpty ? "certificate verify failed" : reason): \(String(cString: text))")
            }
            return .failed(reason.isEmpty ? "TLS error \(error)" : reason)
        }
    }

    func handshake() -> Step {
        ERR_clear_error()
        return step(SSL_do_handshake(ssl))
    }

    func read(into buffer: UnsafeMutableRawPointer, count: Int) -> Step {
        ERR_clear_error()
        return step(SSL_read(ssl, buffer, Int32(clamping: count)))
    }

    func write(_ bytes: UnsafeRawPointer, count: Int) -> Step {
        ERR_clear_error()
        return step(SSL_write(ssl, bytes, Int32(clamping: count)))
    }

    /// Decrypted bytes OpenSSL holds that the socket will not signal again.
    var hasBuffered: Bool { SSL_has_pending(ssl) == 1 }

    /// Sends close_notify, without waiting for the peer's.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// The negotiated version and cipher ("TLSv1.3 TLS_AES_256_GCM_SHA384").
    var summary: String {
        let version = SSL_get_version(ssl).map { String(cString: $0) } ?? "?"
        let cipher = SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? "?"
        return "\(version) \(cipher)"
    }
}
