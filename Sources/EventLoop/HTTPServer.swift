internal import CLibevent
#if canImport(Glibc)
internal import Glibc
#endif

/// A request to the admin endpoint, copied out of libevent's.
public struct HTTPRequest: Sendable {
    public enum Method: Sendable { case get, head, post, other }
    public var method: Method
    /// The path without the query string.
    public var path: String
    public var body: [UInt8]
    /// The `Authorization` header, if any.
    public var authorization: String?
    /// The peer's address (`127.0.0.1`, `::1`, `10.1.2.3`).
    public var peer: String

    public init(method: Method, path: String, body: [UInt8] = [], authorization: String? = nil, peer: String = "127.0.0.1") {
        self.method = method
        self.path = path
        self.body = body
        self.authorization = authorization
        self.peer = peer
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public init(status: Int, text: String) {
        self.init(status: status, body: Array(text.utf8))
    }
}

/// A small HTTP/1.1 server on the loop: libevent's own evhttp, no second HTTP stack. Each request
/// is answered synchronously by `handler` on the loop's thread (admin requests are rare and cheap).
public final class HTTPServer {
    public let port: UInt16
    private var http: OpaquePointer?
    private let handler: (HTTPRequest) -> HTTPResponse
    private unowned let loop: EventLoop

    public init(loop: EventLoop, endpoint: Endpoint,
                handler: @escaping (HTTPRequest) -> HTTPResponse) throws(SocketError) {
        self.handler = handler
        self.loop = loop
        let fd = try Socket.bindAndListen(endpoint, reusePort: false, backlog: 64)
        port = Socket.localPort(fd)
        guard let http = evhttp_new(loop.base) else {
            _ = Glibc.close(fd)
            throw SocketError(.socket, detail: "evhttp_new failed")
        }
        self.http = http
        // evhttp owns the socket from here (it closes it in evhttp_free).
        guard evhttp_accept_socket_with_handle(http, fd) != nil else {
            _ = Glibc.close(fd)
            evhttp_free(http)
            self.http = nil
            throw SocketError(.listen, detail: "evhttp_accept_socket failed")
        }
        evhttp_set_timeout(http, 10)
        evhttp_set_max_body_size(http, 64 * 1024)
        evhttp_set_max_headers_size(http, 16 * 1024)
        evhttp_set_allowed_methods(http, UInt16(EVHTTP_REQ_GET.rawValue | EVHTTP_REQ_HEAD.rawValue | EVHTTP_REQ_POST.rawValue))
        evhttp_set_gencb(http, { request, context in
            guard let request, let context else { return }
            let server = Unmanaged<HTTPServer>.fromOpaque(context).takeUnretainedValue()
            server.loop.callback { server.handle(request) }
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { close() }

    /// Stops serving; requests in progress are dropped.
    public func close() {
        guard let http else { return }
        evhttp_free(http)
        self.http = nil
    }

    private func handle(_ request: OpaquePointer) {
        let method: HTTPRequest.Method
        switch evhttp_request_get_command(request) {
        case EVHTTP_REQ_GET: method = .get
        case EVHTTP_REQ_HEAD: method = .head
        case EVHTTP_REQ_POST: method = .post
        default: method = .other
        }
        var path = evhttp_request_get_uri(request).map { String(cString: $0) } ?? "/"
        if let query = path.firstIndex(of: "?") { path = String(path[..<query]) }
        var body: [UInt8] = []
        if let input = evhttp_request_get_input_buffer(request) {
            let count = evbuffer_get_length(input)
            if count > 0 {
                body = [UInt8](repeating: 0, count: count)
                body.withUnsafeMutableBytes { _ = evbuffer_copyout(input, $0.baseAddress, count) }
            }
        }
        let authorization = evhttp_find_header(evhttp_request_get_input_headers(request), "Authorization").map { String(cString: $0) }
        var peer = ""
        if let connection = evhttp_request_get_connection(request) {
            var address: UnsafeMutablePointer<CChar>?
            var port: UInt16 = 0
            evhttp_connection_get_peer(connection, &address, &port)
            if let address { peer = String(cString: address) }
        }
        let response = handler(HTTPRequest(method: method, path: path, body: body, authorization: authorization, peer: peer))
        let headers = evhttp_request_get_output_headers(request)
        evhttp_add_header(headers, "Content-Type", response.contentType)
        evhttp_add_header(headers, "Cache-Control", "no-store")
        let buffer = evbuffer_new()
        response.body.withUnsafeBytes { _ = evbuffer_add(buffer, $0.baseAddress, $0.count) }
        evhttp_send_reply(request, Int32(response.status), Self.reason(response.status), buffer)
        evbuffer_free(buffer)
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Status"
        }
    }
}
