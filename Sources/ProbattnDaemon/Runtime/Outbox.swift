import Foundation
import ProbattnSession
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A message the socket thread must send: a reply on the ROUTER (with the requester's routing envelope) or an
/// update on the PUB socket.
public enum Outgoing: Sendable {
    case reply(envelope: [[UInt8]], frames: [[UInt8]])
    case publish(frames: [[UInt8]])
}

/// The hand-off from worker threads to the socket thread: a FIFO under a lock plus an eventfd the socket thread polls
/// (with `zmq_poll`) next to its sockets (a non-blocking pipe: its read end is readable while wake-ups are pending). One FIFO — rather than one inproc socket per worker — keeps the updates of
/// one image in the order the (serialised) jobs produced them.
public final class Outbox: Sendable {
    private let items = Mutex<[Outgoing]>([])
    /// Readable when there is something to send.
    public let wakeDescriptor: Int32
    private let signalDescriptor: Int32

    public init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw ProtocolError(.internal, "pipe failed: \(String(cString: strerror(errno)))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeDescriptor = fds[0]
        signalDescriptor = fds[1]
    }

    deinit {
        close(wakeDescriptor)
        close(signalDescriptor)
    }

    /// Queues messages (in order) and wakes the socket thread.
    public func post(_ messages: [Outgoing]) {
        guard !messages.isEmpty else { return }
        items.withLock { $0.append(contentsOf: messages) }
        var one: UInt8 = 1
        _ = write(signalDescriptor, &one, 1)  // a full pipe (EAGAIN) already means "wake up"
    }

    /// Takes everything queued; called by the socket thread when the wake descriptor is readable (or on a timeout).
    public func drain() -> [Outgoing] {
        var scratch = [UInt8](repeating: 0, count: 256)
        while read(wakeDescriptor, &scratch, scratch.count) > 0 {}
        return items.withLock { items in
            let taken = items
            items.removeAll(keepingCapacity: true)
            return taken
        }
    }

    public var isEmpty: Bool { items.withLock { $0.isEmpty } }
}
