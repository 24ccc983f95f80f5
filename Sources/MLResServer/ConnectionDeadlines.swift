import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// Deadlines on client I/O, which Hummingbird 2.28 does not give: its HTTP/1 `idleTimeout`
/// (`HTTPConnectionStateHandler`) closes a connection only after no HTTP *part* arrived for the
/// whole timeout, so a client that trickles body bytes keeps it forever, a stalled upload is
/// closed without an answer, and a graceful shutdown waits for a request whose body never comes.
///
/// So the server's HTTP/1 channel (``DeadlineHTTP1Channel``) adds two handlers of its own:
/// - ``RequestBytesObserver`` at the front of the pipeline notes raw bytes (a request head has
///   begun) before the HTTP decoder can produce a head;
/// - ``RequestDeadlineHandler`` after the decoder enforces, per connection:
///   - the head of a request must be complete within `requestTimeout` of its first byte, and
///     its body within `requestTimeout` of the head: otherwise the reply is 408 (JSON error) and
///     the connection is closed; a reply already started is not interrupted, the connection is
///     only closed;
///   - a keep-alive connection with no request is closed after `idleTimeout`;
///   - on graceful shutdown (SIGTERM) a request whose head or body has not fully arrived is
///     answered 503 and its connection closed at once, so shutdown never waits for a stalled
///     client; requests already read finish normally (Hummingbird drains them).
/// Time spent computing a reply is not bounded here (the batcher bounds the queue instead).
struct DeadlineHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let requestTimeout: TimeAmount
    let idleTimeout: TimeAmount
    /// Called on the event loop with the status (408, 503) of each reply the handler sends itself
    /// and the request's method and path when its head had arrived.
    let onReply: @Sendable (_ status: Int, _ method: String?, _ path: String?) -> Void

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let deadlines = RequestDeadlineHandler(requestTimeout: requestTimeout, idleTimeout: idleTimeout, onReply: onReply)
        do {
            // First in the pipeline: it sees bytes before the HTTP decoder that `inner` adds.
            try channel.pipeline.syncOperations.addHandler(RequestBytesObserver(deadlines: deadlines))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        var configuration = inner.configuration
        let previous = configuration.additionalChannelHandlers
        configuration.additionalChannelHandlers = { [deadlines] in previous() + [deadlines] }
        return HTTP1Channel(responder: inner.responder, configuration: configuration).setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Tells the connection's ``RequestDeadlineHandler`` that bytes arrived (raw, before decoding).
final class RequestBytesObserver: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    // Same channel, same event loop: no locking needed.
    private let deadlines: RequestDeadlineHandler
    init(deadlines: RequestDeadlineHandler) { self.deadlines = deadlines }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadlines.bytesArrived()
        context.fireChannelRead(data)
    }
}

/// The per-connection deadlines (see ``DeadlineHTTP1Channel``). Runs on the channel's event loop.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let onReply: @Sendable (Int, String?, String?) -> Void
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    /// Heads received and replies finished on this connection.
    private var heads = 0, replies = 0
    /// The latest request's head arrived and its end not yet.
    private var readingBody = false
    /// Bytes of a next request arrived before its head was decoded.
    private var headStarted = false
    /// The reply to the latest request has started (its head was written).
    private var replyStarted = false
    /// This handler answered (408/503) and is closing: the application's writes are dropped.
    private var answered = false
    private var method: String?, path: String?

    init(requestTimeout: TimeAmount, idleTimeout: TimeAmount, onReply: @escaping @Sendable (Int, String?, String?) -> Void) {
        self.requestTimeout = requestTimeout; self.idleTimeout = idleTimeout; self.onReply = onReply
    }

    private var idle: Bool { heads == replies && !readingBody }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { schedule(idleTimeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel(); timer = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        schedule(idleTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel(); timer = nil
        context.fireChannelInactive()
    }

    /// Raw bytes arrived: when no request is open, a new head has begun.
    func bytesArrived() {
        if idle && !headStarted && !answered {
            headStarted = true
            schedule(requestTimeout)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if answered { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            heads += 1
            readingBody = true
            headStarted = false
            replyStarted = false
            method = head.method.rawValue
            path = head.path
            schedule(requestTimeout)
        case .body:
            break
        case .end:
            readingBody = false
            timer?.cancel(); timer = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if answered {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head: replyStarted = true
        case .body: break
        case .end:
            replies += 1
            if idle { schedule(idleTimeout) }
        }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, !answered, readingBody || (idle && headStarted) {
            answer(context, status: .serviceUnavailable,
                   "the server is shutting down and this request had not fully arrived; it was dropped")
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func schedule(_ delay: TimeAmount) {
        timer?.cancel()
        guard let context else { return }
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) { [self] in
            self.timer = nil
            self.fire()
        }
    }

    private func fire() {
        guard let context, !answered else { return }
        let seconds = Double(requestTimeout.nanoseconds) / 1e9
        if readingBody {
            answer(context, status: .requestTimeout,
                   "the request body did not arrive within \(seconds) s of its head (--request-timeout-s)")
        } else if idle && headStarted {
            answer(context, status: .requestTimeout,
                   "the request head did not arrive within \(seconds) s (--request-timeout-s)")
        } else if idle {
            context.close(promise: nil)   // an idle keep-alive connection
        }
    }

    /// Writes a JSON error reply (unless a reply already started) and closes the connection.
    private func answer(_ context: ChannelHandlerContext, status: HTTPResponse.Status, _ message: String) {
        timer?.cancel(); timer = nil
        answered = true
        if replyStarted {
            context.close(promise: nil)
            return
        }
        let body = ByteBuffer(string: HTTPFailure(status.code, message).json)
        var head = HTTPResponse(status: status)
        head.headerFields[.contentType] = "application/json"
        head.headerFields[.contentLength] = String(body.readableBytes)
        head.headerFields[.connection] = "close"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        done.futureResult.whenComplete { _ in context.close(promise: nil) }
        onReply(Int(status.code), readingBody ? method : nil, readingBody ? path : nil)
    }
}
