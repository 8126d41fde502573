package session

import (
	"sync"
	"time"

	"chatroom/hub"
	"chatroom/hub/wire"
)

// Deliver implements hub.Subscriber: it queues ev without blocking. A member
// is not told of its own join or leave (its joined and left replies say it).
// An original-protocol client does not get its own messages back, nor
// anything about rooms or typing; an extended one gets its own messages back,
// as the acknowledgement that places each in room order.
func (s *Session) Deliver(ev *hub.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing != nil:
		return
	case ev.Kind == hub.KindWelcome:
		s.selfID = ev.Subject.ID
	case (ev.Kind == hub.KindJoin || ev.Kind == hub.KindLeave) && ev.Subject.ID == s.selfID:
		return // its own joined/left reply told it; these are for the others
	case ev.Kind == hub.KindMessage && ev.From.ID == s.selfID && !s.extended:
		return
	case ev.Kind == hub.KindTyping && (ev.From.ID == s.selfID || !s.extended):
		return
	case (ev.Kind == hub.KindJoined || ev.Kind == hub.KindLeft) && !s.extended:
		return // an original client is in the lobby only, and knows nothing of rooms
	}
	switch ev.Kind {
	case hub.KindWelcome, hub.KindLeft:
		s.enqueueReplyLocked(item{ev: ev}, 128)
	case hub.KindRefused:
		s.enqueueReplyLocked(item{ev: ev}, 128+len(ev.Reason))
	case hub.KindJoined:
		s.enqueueReplyLocked(item{ev: ev}, wire.JoinedSizeBound(ev))
	default:
		s.enqueueLocked(item{ev: ev}, len(ev.Text)+128)
	}
}

// Busy implements hub.Subscriber: the queue is more than half full, so
// private messages to this member are refused to their senders, and only
// what its rooms publish can make it a slow consumer.
func (s *Session) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return 2*len(s.items) > s.opts.QueueMessages || 2*s.bytes > s.opts.QueueBytes
}

// reply queues frames already encoded, such as a response to a request.
func (s *Session) reply(frames ...[]byte) {
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueueReplyLocked(item{frames: frames}, size)
}

// enqueueLocked queues a room event (or a private message, a notice), or
// drops the session as a slow consumer when the queue is over its bounds:
// the member is not keeping up with what others send.
func (s *Session) enqueueLocked(it item, size int) {
	if len(s.items) >= s.opts.QueueMessages || s.bytes+size > s.opts.QueueBytes {
		s.closeLocked(hub.DisconnectSlowConsumer, true)
		return
	}
	if len(s.items) == cap(s.items) && len(s.items) >= spareCap {
		s.growLocked()
	}
	s.items = append(s.items, it)
	s.bytes += size
	s.startWriterLocked()
}

// growLocked moves a full queue into a larger slice from the pool, if it
// has one, rather than letting append allocate.
func (s *Session) growLocked() {
	p := itemsPool.Get().(*[]item)
	if cap(*p) <= len(s.items) {
		itemsPool.Put(p) // too small to help: leave it for a smaller queue
		return
	}
	bigger := append((*p)[:0], s.items...)
	clear(s.items)
	*p = s.items[:0]
	s.items = bigger
	itemsPool.Put(p)
}

// enqueueReplyLocked queues an answer to the client's own request. Replies
// are counted apart from events: a big answer (a room's history, a long
// member list) is not the client falling behind, so it never makes it a
// slow consumer. Instead, requests that would add to them are refused
// while more than QueueBytes of replies wait (repliesBacklogged), so a
// client that asks and never reads holds at most that plus one reply.
func (s *Session) enqueueReplyLocked(it item, size int) {
	if s.closing != nil {
		return
	}
	s.items = append(s.items, it)
	s.replyBytes += size
	s.startWriterLocked()
}

// repliesBacklogged reports whether the client has more replies waiting
// than it may: further requests for replies are refused until it reads.
func (s *Session) repliesBacklogged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replyBytes >= s.opts.QueueBytes
}
func (s *Session) closeLocked(reason hub.Disconnect, drop bool) {
	if s.closing != nil {
		return
	}
	s.closing = &reason
	if drop {
		clear(s.items)
		s.items = s.items[:0]
		s.bytes, s.replyBytes = 0, 0
		// The writer may be stuck in a write to a peer that stopped reading:
		// give it a moment to deliver the reason, then cut the peer off, so
		// the leave is announced promptly rather than after WriteTimeout.
		time.AfterFunc(lastWordsGrace, s.Abort)
	}
	s.startWriterLocked()
}

// lastWordsGrace is how long a dropped client's connection may take to
// receive the reason before it is cut off.
const lastWordsGrace = time.Second

// spareCap bounds the queue slice a session keeps between bursts: enough
// to make a steady trickle allocation-free, small enough that an idle
// connection does not keep a burst's memory.
const spareCap = 8

// Queue slices larger than spareCap go back to a pool shared by every
// session, so that bursts (a busy room, or a journaled broker delivering a
// written batch at once) reuse them instead of growing new ones each time;
// up to pooledCap, past which one burst's slice is not worth keeping.
const pooledCap = 4096

var itemsPool = sync.Pool{New: func() any { return new([]item) }}

// recycleLocked keeps batch (written, cleared) as the session's spare if it
// is small, or returns it to the pool.
func (s *Session) recycleLocked(batch []item) {
	switch {
	case cap(batch) <= spareCap:
		if s.spare == nil {
			s.spare = batch[:0]
		}
	case cap(batch) <= pooledCap:
		p := itemsPool.Get().(*[]item)
		*p = batch[:0]
		itemsPool.Put(p)
	}
}
