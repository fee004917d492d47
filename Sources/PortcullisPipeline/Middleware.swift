import PortcullisCore

/// What a middleware decided about a request.
public enum MiddlewareDecision {
    /// Hand the request to the next middleware (or, after the last, to the upstream).
    case next
    /// Answer the client now; nothing further runs and nothing goes upstream.
    case respond(LocalResponse)
    /// The middleware started asynchronous work (a Redis reply) and will call
    /// `PipelineResumer.resume(_:)` exactly once, on the same event loop thread.
    case suspend
}

/// One stage of the request pipeline (Envoy filter / nginx phase handler shape).
///
/// Threads: `process` is called on the loop thread that owns the request; a middleware keeps no
/// per-request state of its own (that goes in `RequestContext`), so one instance serves every
/// request of its worker. To suspend, call `context.suspend()` for a `PipelineResumer`, start the
/// asynchronous work, and return `.suspend`; later call `resume(_:)` on the same loop thread.
public protocol Middleware: AnyObject {
    var name: String { get }
    func process(_ context: RequestContext) -> MiddlewareDecision
}

/// Resumes a suspended pipeline. Calling it twice, or from another thread, is a programmer error.
///
/// A middleware may also resume *before* its `process()` returns `.suspend` (the reply was
/// already there, e.g. from a local cache): the decision is then handed back to the running
/// pipeline loop, which carries on with it — no nested run, no deeper stack.
public final class PipelineResumer {
    fileprivate var onResume: ((MiddlewareDecision) -> Void)?
    /// Set while the suspending middleware's `process()` is still on the stack.
    fileprivate var insideProcess = true
    /// A decision given while `insideProcess`.
    fileprivate var early: MiddlewareDecision?
    init(_ f: @escaping (MiddlewareDecision) -> Void) { onResume = f }

    public func resume(_ decision: MiddlewareDecision) {
        if cancelled { return }     // the client left while the reply was on its way
        guard let f = onResume else { preconditionFailure("pipeline resumed twice") }
        if case .suspend = decision { preconditionFailure("resume(.suspend) is meaningless") }
        onResume = nil
        if insideProcess { early = decision; return }
        f(decision)
    }

    /// Drops the continuation (the client went away while suspended); a later `resume` is ignored.
    public func cancel() { onResume = nil; cancelled = true }
    fileprivate var cancelled = false
    public var isPending: Bool { onResume != nil }
}

/// Runs middlewares in order until one answers, all pass, or one suspends. Allocates nothing per
/// stage; a resumer is made only when a middleware actually suspends.
public final class Pipeline {
    public let middlewares: [Middleware]
    /// The same stages, held unretained: `middlewares` keeps them alive for the pipeline's
    /// life, and a running pipeline is kept alive by its caller, so the loop calls each stage
    /// through a guaranteed reference (`Middleware.processGuaranteed`) without the retain and
    /// release a load of an existential reference costs (two atomic operations a stage).
    private let stages: [Stage]
    private typealias Stage = GuaranteedRef<any Middleware.Type>
    public init(_ middlewares: [Middleware]) {
        self.middlewares = middlewares
        stages = middlewares.map { Stage($0, type: type(of: $0)) }
    }

    public enum Outcome {
        case proceed
        case respond(LocalResponse)
    }

    /// Runs from stage `start`. `completion` is called exactly once, possibly later (after a
    /// suspension) but always on the caller's loop thread. Returns the resumer while suspended so
    /// the owner can cancel it if the client disconnects.
    @discardableResult
    public func run(_ ctx: RequestContext, from start: Int = 0,
                    completion: @escaping (Outcome) -> Void) -> PipelineResumer? {
        run(ctx, from: start, handler: ClosureCompletion(completion))
    }

    /// `run` answering a long-lived handler (a connection answers all its requests): no closure
    /// is allocated per request. `handler` is told, with the context, exactly once.
    @discardableResult
    public func run(_ ctx: RequestContext, from start: Int = 0, handler: PipelineCompletion) -> PipelineResumer? {
        var i = start
        ctx.running = self
        ctx.completion = handler
        defer { ctx.running = nil; ctx.completion = nil }
        let stages = self.stages
        while i < stages.count {
            if ctx.suspension != nil { ctx.suspension = nil }
            ctx.stage = i
            switch stages[i].type.processGuaranteed(stages[i].object, ctx) {
            case .next:
                i += 1
            case .respond(let r):
                handler.pipelineFinished(ctx, .respond(r))
                return nil
            case .suspend:
                guard let r = ctx.suspension else {
                    preconditionFailure("\(middlewares[i].name) returned .suspend without context.suspend()")
                }
                r.insideProcess = false
                switch r.early {
                case nil:
                    return r                       // a later resume() continues from i + 1
                case .next?:
                    i += 1                         // resumed synchronously: carry on here
                case .respond(let resp)?:
                    handler.pipelineFinished(ctx, .respond(resp))
                    return nil
                case .suspend?:
                    preconditionFailure("unreachable")
                }
            }
        }
        handler.pipelineFinished(ctx, .proceed)
        return nil
    }
}

extension Middleware {
    /// `process` on the middleware at `object` (an unretained `Self`), through a guaranteed
    /// reference: no retain or release. The caller guarantees the middleware outlives the call.
    static func processGuaranteed(_ object: UnsafeMutableRawPointer, _ ctx: RequestContext) -> MiddlewareDecision {
        withGuaranteed(object, as: Self.self) { $0.process(ctx) }
    }
}

/// Who is told how a pipeline run ended, with the request it ran for.
public protocol PipelineCompletion: AnyObject {
    func pipelineFinished(_ ctx: RequestContext, _ outcome: Pipeline.Outcome)
}

/// A closure as a `PipelineCompletion` (tests, one-off runs).
final class ClosureCompletion: PipelineCompletion {
    let body: (Pipeline.Outcome) -> Void
    init(_ body: @escaping (Pipeline.Outcome) -> Void) { self.body = body }
    func pipelineFinished(_ ctx: RequestContext, _ outcome: Pipeline.Outcome) { body(outcome) }
}
