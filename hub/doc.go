// Package hub owns the chat: who is logged in, which id each member has,
// which rooms exist and who is in each, and the one order in which every
// member of a room sees that room's events. Everyone starts in the room
// "lobby"; members may join other rooms, send private messages and change
// nicknames. Rooms keep recent messages in a History. The hub knows nothing
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
//     calls Login, Publish, JoinRoom, Logout and the rest. With the
//     in-memory MemoryBroker, fan-out happens synchronously inside Publish,
//     on the publisher's goroutine. With a journaled one (durable history,
//     NewJournaledBroker), Publish returns once the event is sequenced and
//     queued; the broker's writer goroutine writes everything queued in one
//     Journal.Write (group commit) and its deliverer goroutine then fans the
//     batch out, in order. Either way fan-out only queues: the sockets are
//     written by a Flusher shared by the fronts (a few goroutines,
//     non-blocking writes) or, for a socket that would block, by that
//     session's own writer goroutine (see hub/session).
//
//   - Acknowledged means durable. With a journal, nothing is delivered
//     before it is written, and an extended sender's acknowledgement is the
//     echo of its own message: so an acknowledged message is in the
//     database. A batch that cannot be written is delivered to nobody; each
//     of its messages comes back to its sender as a KindRefused event (an
//     error reply), and the rooms' counters are wound back to what was
//     written, so the next event takes the lost seq and no member ever sees
//     a hole. Publish blocks only when the journal is maxQueued events
//     behind (backpressure on the publishing connection's reader).
//
//   - Ordering. Every event (message, join, leave, rename, private message,
//     typing, notice) goes through the Broker. The broker is the single
//     sequencer: it stamps each room event with the room's next Seq, stamps
//     Time, and calls the hub's fan-out for one event at a time, so every
//     member of a room receives that room's events in the same order.
//     MemoryBroker does this under its own mutex; the cluster's broker
//     (hub/nats) from its one consumer goroutine (see "Clustering"). The
//     fronts never see the broker.
//
//   - History without gaps. Fan-out appends each sequenced event to History
//     while holding Hub.mu for reading; JoinRoom (and Login, for the lobby)
//     holds Hub.mu for writing while it registers the member and snapshots
//     the room's history (or, resuming from a Position, every event after
//     it: History.After) into the KindJoined event it delivers. So a
//     joiner's history ends exactly where its live events begin: events
//     sequenced but not yet delivered reach it live. The snapshot reads
//     memory only (a durable History keeps a MemoryHistory of each room's
//     latest events for this); scroll-back and search may read the disk,
//     outside every hub lock.
//
//   - Locks. Hub.mu (an RWMutex) guards the member tables (by id, by
//     nickname), the rooms and each room's member slice. Login, Logout,
//     JoinRoom, LeaveRoom and Rename take it for writing; fan-out and lookups
//     for reading. MemoryHistory has its own mutex, taken under Hub.mu. The
//     lock order is MemoryBroker.mu → Hub.mu → (MemoryHistory.mu | the
//     subscriber's own queue lock | MemoryBroker.seqMu), and nothing ever
//     takes them the other way round: the hub publishes announcements only
//     after releasing Hub.mu. (MemoryBroker.seqMu, a leaf guarding only the
//     rooms' counters, is what lets the hub forget a removed room's counter
//     under Hub.mu.) A journaled broker's writer holds no hub lock while it
//     writes, and its deliverer takes Hub.mu for reading per event, like a
//     publisher; MemoryBroker.mu guards only its queue there (Journal.Write
//     runs without it), except that the first event of a room reads the
//     room's last seq from the journal under it, once. No lock is held
//     during socket I/O anywhere: Subscriber.Deliver only appends to a
//     queue.
//
//   - Rooms' lives. A room is created by its first join and stays while it
//     has members; once empty it stays, with its history, until a new room
//     needs its place (MaxRooms). It is removed then, under Hub.mu, and the
//     in-memory broker and history forget it (RoomForgetter). Nothing can
//     be on its way to a room with no members from the in-memory broker:
//     every event in a room comes from a member in it, on that member's
//     goroutine, and a member's last leave is not announced (nobody is left
//     to tell; in a cluster it is, for other nodes' members, and events of
//     other nodes' members do reach a room empty here: fan-out keeps them
//     in History). A journaled broker may still be writing a message of the
//     room's last member: it keeps that room's counter until the write is
//     done (so seq never goes back), and the message, delivered to a room
//     that is gone, reaches nobody; it is in the database all the same.
//
//   - Bots (hub/bot) are members without a socket: their Deliver queues to
//     a bounded channel read by the bot's own goroutine, which calls the
//     hub like a reader goroutine does. A bot that falls behind drops
//     events; it never holds up fan-out.
//
//   - Slow clients. Subscriber.Deliver must never block. Subscriber.Busy
//     (a queue more than half full) makes the hub refuse private messages
//     to that member to their senders, so that only what its rooms publish
//     can make it a slow consumer. A subscriber whose
//     bounded queue (count and bytes) is full cuts itself off: it marks itself
//     disconnected with a Disconnect reason, its writer goroutine writes the
//     reason and closes the socket (cutting it off after a second if the
//     peer does not read), and its reader goroutine then calls Logout,
//     which announces the leave to everyone else. The hub and every other member
//     never wait for it, and neither does a Flusher: a socket that does not
//     take a whole write at once goes to the session's own writer goroutine,
//     the only one that waits on it (up to the write timeout). hub/session
//     implements exactly this.
//
//   - Panics. No goroutine that serves many members may die of one member's
//     data. A reader goroutine recovers a panic in its requests (and so in
//     the fan-out it runs), a writer goroutine and a Flusher's encode-and-
//     write recover theirs; each logs the stack and drops only the
//     connection involved. A journaled broker's deliverer loses only the
//     event whose fan-out panicked (counted; Close reports it), and a bot's
//     goroutine only the event its handler panicked on. Hub.mu is released
//     by defers, so a panic under it cannot leave the hub locked for
//     everyone.
//
//   - Clustering. With Options.Directory (hub/nats's Cluster, which is
//     also the Broker), the hub is one node of several sharing every room
//     through NATS JetStream. Ordering: a room's events are stored in one
//     JetStream stream, each node publishing a batch only if nothing else
//     was stored in the room since the last one it knows of (compare-and-
//     set), so seq is contiguous and cluster-wide. Delivery: each node's
//     single consumer goroutine reads every room's events in stream order,
//     writes them to the node's own Journal (its SQLite copy, if any) and
//     calls fan-out one event at a time, exactly like the journaled
//     broker's deliverer; private messages, typing and notices arrive on
//     a core NATS subscription's goroutine, serialised with it by the
//     cluster's delivery mutex. Each node fans out to its own members only.
//     Publish returns once the event is stored in JetStream (its echo
//     comes back through the consumer) or fails with the cluster's
//     ErrUnavailable, which the sender sees. History and resume: fan-out
//     appends every room event to History, on every node, even for a room
//     with no member there, so History.After and scroll-back answer alike
//     on any node, and a member whose node died resumes on another from
//     its Position (the epoch is the cluster's). Nicknames are claimed
//     cluster-wide (Directory.Claim, over the network, before Hub.mu is
//     taken; the local check under Hub.mu stays); presence goes out after
//     each membership change (Directory.Present, after its announcement),
//     and other nodes' members appear in lists and can be sent private
//     messages through the Directory's lookups, which answer from memory
//     under Hub.mu (lock order: Hub.mu → the directory's lock). Member ids
//     come from a range per node start (Options.FirstID). Without a
//     Directory none of this runs: the single-node paths are unchanged.
//
//   - Events are immutable once published and shared by every recipient, so
//     an event is encoded once per wire shape (hub/wire, through the cache
//     Event.Encoding keeps on the event), not once per recipient, whichever
//     front and writer sends it.
package hub
