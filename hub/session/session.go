// Package session is the connection contract shared by every front: the
// request/response state machine of one chat client (login, broadcast,
// members), its bounded send queue and its writers. A front supplies a Conn
// that reads request frames and writes response frames (SocketWriter is the
// write half both fronts use); everything else about a client behaves the
// same over TCP and WebSocket.
//
// A Session runs on its reader goroutine (Run's caller), which decodes
// requests and calls the hub. Its queue is written out by one writer at a
// time, which exists only while there is something to write: the first
// delivery into an empty queue starts it, and it stops once it has drained
// the queue, so an idle connection costs one goroutine. The writer is a
// Flusher's turn when the front gives one and the Conn can write without
// blocking (a plain socket): a few shared goroutines (half the CPUs) write
// each such queue with one non-blocking write. Otherwise, or when the socket
// does not take everything at once, or for paced original-protocol clients
// and closing sessions, it is a writer goroutine of the session's own, which
// may block (up to the write timeout). The hub delivers into the queue under
// the hub's locks, so Deliver only appends; a queue over its bounds
// (messages or bytes) marks the session disconnected as a slow consumer and
// the writer closes the connection. The queue's mutex is a leaf lock but for
// the Flusher's hand-off (a read lock and a channel send that never waits),
// and no lock is held during socket I/O.
package session

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"chatroom/hub"
)

// logAt logs msg with the session's attributes and args.
func (s *Session) logAt(level slog.Level, msg string, args ...any) {
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	s.log.Log(context.Background(), level, msg, slices.Concat(s.opts.LogAttrs, args)...)
}

// Session is one client connection's state. Create it with New and call Run.
type Session struct {
	hub  *hub.Hub
	conn Conn
	try  TryWriter // conn, when it is one and there is a Flusher
	opts Options
	log  *slog.Logger

	// Owned by the reader goroutine.
	self     hub.Identity
	requests *rate.Limiter // nil: unlimited
	refusals *rate.Limiter
	loggedIn atomic.Bool // set once by the reader; read by the login timer too
	// loginTimer enforces LoginTimeout; dropped at login, so that an idle
	// member does not keep it.
	loginTimer *time.Timer

	notBefore time.Time // original protocol: no write before this; owned by the writer

	mu         sync.Mutex // guards the fields below; a leaf lock
	items      []item
	spare      []item // an empty slice to queue into after the next swap
	bytes      int    // events' bytes in items (bounded: slow consumer)
	replyBytes int    // replies' bytes in items (bounded: requests refused)
	extended   bool   // the client opted in to the extended protocol at login
	selfID     int64  // set by the welcome event
	closing    *hub.Disconnect

	writing bool // a writer (a Flusher's turn or a goroutine) owns the queue until it is empty

	done     chan struct{} // closed once the connection is closed
	aborted  atomic.Bool   // set once by Abort: write nothing more
	doneOnce sync.Once
}

// item is one queued thing to write: a room event, encoded by the writer in
// the client's shape, or frames already encoded (replies).
type item struct {
	ev     *hub.Event
	frames [][]byte
}

// New returns a session for conn on h.
func New(h *hub.Hub, conn Conn, opts Options) *Session {
	opts = opts.withDefaults()
	s := &Session{
		hub:      h,
		conn:     conn,
		opts:     opts,
		log:      opts.Logger,
		refusals: rate.NewLimiter(1, opts.RefusalBurst),
		done:     make(chan struct{}),
	}
	if opts.RequestRate > 0 {
		s.requests = rate.NewLimiter(rate.Limit(opts.RequestRate), opts.RequestBurst)
	}
	if tw, ok := conn.(TryWriter); ok && opts.Flusher != nil {
		s.try = tw
	}
	return s
}

// Run serves the connection until it ends, then leaves the room. It returns
// once the connection is closed and both goroutines are done.
//
// An idle connection's goroutine spends its life parked in the read under
// Run, and the runtime shrinks a stack only while less than a quarter of it
// is in use; so the frames from Run down to the front's read stay small, and
// the work (requests, setup, teardown) happens in callees that have returned
// by the time the goroutine parks. That lets an idle connection's stack
// shrink back to 4 KiB after a burst of work (logging in grows it to 8):
// the least for a goroutine parked in a socket read, since the runtime
// counts 800 bytes of guard on top of the frames in use.
func (s *Session) Run(ctx context.Context) {
	s.start()
	reason := s.safeReadLoop(ctx)
	s.finish(ctx, reason)
}

// start arms the login deadline.
//
//go:noinline
func (s *Session) start() {
	s.loginTimer = time.AfterFunc(s.opts.LoginTimeout, func() {
		if !s.loggedIn.Load() {
			s.Disconnect(hub.Disconnect{Code: hub.CodeTimeout, Reason: "did not log in within " + s.opts.LoginTimeout.String()})
		}
	})
}
func (s *Session) stopLoginTimer() {
	if s.loginTimer != nil {
		s.loginTimer.Stop()
		s.loginTimer = nil
	}
}

// finish leaves the hub, closes the connection and waits for the writer.
//
//go:noinline
func (s *Session) finish(ctx context.Context, reason hub.Disconnect) {
	s.stopLoginTimer()
	if d := s.closingReason(); d != nil {
		reason = *d // the writer's reason (say, slow consumer) is the real one
	}
	if s.loggedIn.Load() {
		s.hub.Logout(ctx, s.self.ID, reason.Reason)
	}
	s.Disconnect(reason)
	<-s.done
	if reason.Code != hub.CodeLeft {
		s.opts.Observer.Disconnected(reason.Code)
	}
	s.logAt(slog.LevelInfo, "connection closed", "id", s.self.ID, "nickname", s.self.Nickname, "reason", reason.Reason, "code", reason.Code.String())
}

// Disconnect ends the session with reason: whatever is queued is still
// written (bounded by the write timeout), then the connection is closed. It
// does not block and only the first reason counts.
func (s *Session) Disconnect(reason hub.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(reason, false)
}

// Abort closes the connection at once, dropping anything unwritten.
func (s *Session) Abort() {
	if s.aborted.CompareAndSwap(false, true) {
		s.conn.Abort()
	}
}
func (s *Session) closingReason() *hub.Disconnect {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
func (s *Session) isExtended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extended
}
