// Package hub owns the chat room: who is in it, which id each member has, and
// the one order in which every member sees the room's events. It knows nothing
// of TCP, HTTP, WebSocket or JSON; the fronts (tcpfront, webfront) adapt
// connections to it through the small Subscriber interface, and package
// hub/session is the shared connection state machine they both use.
//
// # Concurrency model
//
// Read this before touching the hub.
//
//   - Goroutines. The hub starts none. Every call into it runs on the
//     goroutine of the connection that made it: a member's reader goroutine
//     calls Join, Publish and Leave. Fan-out happens synchronously inside
//     Publish, on the publisher's goroutine.
//
//   - Ordering. Every event (message, join, leave, notice) goes through the
//     Broker. The broker is the single sequencer: it stamps Seq and Time and
//     calls the hub's fan-out for one event at a time, so every member's queue
//     receives the room's events in the same order. MemoryBroker does this
//     under its own mutex; a networked broker (NATS, for several chatd nodes)
//     would do it from its single subscription goroutine. The fronts never see
//     the broker.
//
//   - Locks. Hub.mu (an RWMutex) guards the member table: the slice used for
//     fan-out and the id and nickname indexes. Join and Leave take it for
//     writing; fan-out takes it for reading. The lock order is
//     MemoryBroker.mu → Hub.mu → the subscriber's own queue lock, and nothing
//     ever takes them the other way round. No lock is held during socket I/O
//     anywhere: Subscriber.Deliver only appends to a queue.
//
//   - Slow clients. Subscriber.Deliver must never block. A subscriber whose
//     bounded queue (count and bytes) is full cuts itself off: it marks itself
//     disconnected with a Disconnect reason, its writer goroutine writes the
//     reason and closes the socket, and its reader goroutine then calls Leave,
//     which announces the leave to everyone else. The hub and every other member
//     never wait for it. hub/session implements exactly this.
//
//   - Events are immutable once published and shared by every recipient, so
//     each front encodes an event once per wire shape (Event.Encoding caches
//     the bytes), not once per recipient.
package hub
