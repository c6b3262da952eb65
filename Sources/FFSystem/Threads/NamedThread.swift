#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// Starts a detached OS thread with a chosen stack size and name (visible in `top -H`, `ps -L`, gdb): for
/// work that blocks (poll, verbs calls) and must never run on Swift's cooperative pool.
public enum NamedThread {
    private final class Start {
        let name: String
        let body: () -> Void
        init(name: String, body: @escaping () -> Void) { self.name = name; self.body = body }
    }

    /// Runs `body` on a new thread named `name` (the kernel keeps 15 bytes) with `stackBytes` of stack.
    /// Throws EAGAIN when the system is out of threads or memory for the stack.
    public static func start(name: String, stackBytes: Int,
                             _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let minimum = Int(PTHREAD_STACK_MIN)
        pthread_attr_setstacksize(&attributes, max(stackBytes, minimum))
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            _ = pthread_setname_np(pthread_self(), String(decoding: start.name.utf8.prefix(15), as: UTF8.self))
            start.body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw SystemError(operation: "pthread_create", errno: rc, detail: name)
        }
    }
}
