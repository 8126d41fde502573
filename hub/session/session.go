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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"chatroom/hub"
	"chatroom/hub/wire"
)

// Conn is a client connection as a session needs it. Fronts implement it.
type Conn interface {
	// ReadFrame returns the next request frame, valid until the next call.
	// An error that is a hub.Disconnect ends the session with that reason.
	ReadFrame() ([]byte, error)
	// WriteFrames writes frames in order, as few writes as the transport
	// allows, giving up at deadline.
	WriteFrames(frames [][]byte, deadline time.Time) error
	// Close ends the connection after telling the peer why, where the
	// transport can (a WebSocket close status). It may take a moment.
	Close(d hub.Disconnect) error
	// Abort ends the connection at once. It is safe to call concurrently
	// with anything, and more than once.
	Abort()
}

// Defaults for Options.
const (
	DefaultQueueMessages = 1024
	DefaultQueueBytes    = 1 << 20
	DefaultWriteTimeout  = 10 * time.Second
	DefaultLoginGap      = 50 * time.Millisecond
	DefaultPushGap       = 1 * time.Millisecond
	DefaultLoginTimeout  = 30 * time.Second
	DefaultRequestRate   = 10 // requests per second
	DefaultRequestBurst  = 20
	DefaultRefusalBurst  = 20
)

// Observer is told what sessions do; metrics implement it. Its methods must
// be cheap and must not block.
type Observer interface {
	LoggedIn()
	Refused(reason string)
	Disconnected(code hub.DisconnectCode)
	Wrote(frames int)
	Drained(items int)
}

type nopObserver struct{}

func (nopObserver) LoggedIn()                       {}
func (nopObserver) Refused(string)                  {}
func (nopObserver) Disconnected(hub.DisconnectCode) {}
func (nopObserver) Wrote(int)                       {}
func (nopObserver) Drained(int)                     {}

// Options tune a session. The zero value of every field is the documented
// default.
type Options struct {
	// QueueMessages bounds the items waiting to be written. Default
	// DefaultQueueMessages.
	QueueMessages int
	// QueueBytes bounds the bytes waiting to be written. Default
	// DefaultQueueBytes.
	QueueBytes int
	// WriteTimeout bounds each write to the socket; a peer that does not
	// read within it is disconnected. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// LoginGap is how long nothing follows the login reply to an
	// original-protocol client, so that its recv(1024) does not see the reply
	// and the next push as one (unparseable) read. Default DefaultLoginGap.
	LoginGap time.Duration
	// PushGap is the least time between two pushes to an original-protocol
	// client. That client parses each recv(1024) as exactly one object, so
	// two pushes that reach it before it reads again are lost as one
	// unparseable read; a short gap lets it keep up. It caps such a client at
	// 1/PushGap pushes a second (a busier room overflows its queue and drops
	// it as a slow consumer). Extended clients are never paced. Default
	// DefaultPushGap; negative disables.
	PushGap time.Duration
	// LoginTimeout is how long a connection may stay without logging in.
	// The original client connects first and its user then types "login",
	// so this allows for a person. Default DefaultLoginTimeout.
	LoginTimeout time.Duration
	// RequestRate and RequestBurst limit the requests a connection may make
	// (a token bucket): excess requests are refused with an error. Defaults
	// DefaultRequestRate per second and DefaultRequestBurst; a negative rate
	// lifts the limit.
	RequestRate  float64
	RequestBurst int
	// RefusalBurst is how many refused requests in a row a connection may
	// make (the allowance refills at one per second) before it is
	// disconnected for abuse. Default DefaultRefusalBurst.
	RefusalBurst int
	// Flusher, when set, writes extended clients' queues from its shared
	// goroutines where the Conn is a TryWriter (see Flusher). Default: every
	// session writes on a goroutine of its own while it has something to.
	Flusher *Flusher
	// Observer is told of logins, refusals, drops and writes. Default: none.
	Observer Observer
	// Logger receives connection lifecycle logs. Default: discard.
	Logger *slog.Logger
	// Peer is the client's address as the connection limits count it (its
	// IP), for the hub's per-address quotas. Default: none (quotas per
	// member).
	Peer string
	// LogAttrs are added to every log line of the session, such as the
	// front and the remote address. (Cheaper per idle connection than a
	// Logger.With clone, which preformats them into a new handler.)
	LogAttrs []any
}

func (o Options) withDefaults() Options {
	if o.QueueMessages <= 0 {
		o.QueueMessages = DefaultQueueMessages
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.LoginGap <= 0 {
		o.LoginGap = DefaultLoginGap
	}
	if o.PushGap == 0 {
		o.PushGap = DefaultPushGap
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = DefaultLoginTimeout
	}
	if o.RequestRate == 0 {
		o.RequestRate = DefaultRequestRate
	}
	if o.RequestBurst <= 0 {
		o.RequestBurst = DefaultRequestBurst
	}
	if o.RefusalBurst <= 0 {
		o.RefusalBurst = DefaultRefusalBurst
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

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

// safeReadLoop is readLoop with a panic contained to this connection.
func (s *Session) safeReadLoop(ctx context.Context) (reason hub.Disconnect) {
	defer s.recoverReader(&reason)
	return s.readLoop(ctx)
}

// recoverReader, deferred by the reader, turns a panic into an internal
// error that ends this connection only.
func (s *Session) recoverReader(reason *hub.Disconnect) {
	p := recover()
	if p == nil {
		return
	}
	s.logAt(slog.LevelError, "panic serving connection", "panic", p, "stack", string(debug.Stack()))
	*reason = hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}
	s.mu.Lock()
	s.closeLocked(*reason, true)
	s.mu.Unlock()
	s.Abort()
}

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

// startWriterLocked starts a writer unless one is running: a Flusher's
// turn where there is one and all there is to do is a plain write,
// otherwise a writer goroutine. A writer goroutine lives only while there is
// something to write, so an idle connection costs one goroutine (its
// reader), not two.
func (s *Session) startWriterLocked() {
	if s.writing {
		return
	}
	s.writing = true
	if s.try != nil && s.extended && s.closing == nil && s.opts.Flusher.push(s) {
		return
	}
	go s.writeLoop(false)
}

// flush writes what is queued without blocking, on a goroutine of f's. A
// socket that does not take it all at once, a failed write, or a session
// that is closing hands over to a writer goroutine of the session's own.
// While the flush runs, s.writing keeps any other writer away.
func (s *Session) flush(f *Flusher) {
	s.mu.Lock()
	if s.closing != nil || !s.extended || len(s.items) == 0 {
		s.mu.Unlock()
		go s.writeLoop(false)
		return
	}
	batch := s.items
	s.items, s.spare = s.spare, nil
	s.bytes, s.replyBytes = 0, 0
	s.mu.Unlock()
	s.opts.Observer.Drained(len(batch))

	done, err := s.tryWriteBatch(batch)
	clear(batch)

	s.mu.Lock()
	s.recycleLocked(batch)
	switch {
	case err != nil:
		d := hub.Disconnect{Code: hub.CodeWriteFailed, Reason: "write failed"}
		if errors.Is(err, errPanic) {
			d = hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}
		}
		s.closeLocked(d, true)
		s.mu.Unlock()
		s.logAt(slog.LevelDebug, "write failed", "err", err)
		s.conn.Abort()
		go s.writeLoop(false) // closes the connection and marks the session done
	case !done:
		// The socket is full: the rest needs a writer that can wait.
		s.mu.Unlock()
		go s.writeLoop(true)
	case len(s.items) == 0 && s.closing == nil:
		s.writing = false
		s.mu.Unlock()
	default:
		s.mu.Unlock()
		if !f.push(s) { // more came meanwhile: back in line
			go s.writeLoop(false)
		}
	}
}

// tryWriteBatch encodes batch and writes it without blocking. It is the
// part of a flush that touches what clients sent (their events' text and
// names), on a goroutine every session shares: a panic here, a bug that one
// client's data triggered, must end that client's connection and nobody
// else's. So it is recovered, logged with its stack, and returned as an
// error wrapping errPanic, which the flush handles like a failed write.
func (s *Session) tryWriteBatch(batch []item) (done bool, err error) {
	scratch := framesPool.Get().(*[][]byte)
	frames := (*scratch)[:0]
	defer func() {
		if p := recover(); p != nil {
			s.logAt(slog.LevelError, "panic writing to connection", "panic", p, "stack", string(debug.Stack()))
			done, err = false, fmt.Errorf("%w: %v", errPanic, p)
		}
		clear(frames)
		*scratch = frames[:0]
		framesPool.Put(scratch)
	}()
	for _, it := range batch {
		if it.ev == nil {
			frames = append(frames, it.frames...)
		} else {
			frames = append(frames, wire.EncodeEvent(it.ev, true)...)
		}
	}
	s.opts.Observer.Wrote(len(frames))
	return s.try.TryWriteFrames(frames)
}

// errPanic marks a writer's error as a recovered panic.
var errPanic = errors.New("panic")

func (s *Session) isExtended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extended
}

// readLoop reads and handles requests until the connection ends, and says
// why. Its frame is on every idle connection's stack: keep it small (see Run).
func (s *Session) readLoop(ctx context.Context) hub.Disconnect {
	for {
		frame, err := s.conn.ReadFrame()
		if err != nil {
			return s.readFailed(err)
		}
		if s.serveFrame(ctx, frame) {
			return *s.closingReason()
		}
	}
}

// serveFrame handles one request frame and reports whether the session must
// stop reading (it was cut off for abuse).
//
//go:noinline
func (s *Session) serveFrame(ctx context.Context, frame []byte) (stop bool) {
	if s.requests != nil && !s.requests.Allow() {
		s.refuse(wire.Request{Type: "?"}, errRateLimited)
	} else {
		s.handle(ctx, frame)
	}
	d := s.closingReason()
	return d != nil && d.Code == hub.CodeAbuse
}

// readFailed says why reading ended with err.
//
//go:noinline
func (s *Session) readFailed(err error) hub.Disconnect {
	var d hub.Disconnect
	switch {
	case errors.As(err, &d):
		return d
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		// A reset is how a client that closes with unread data leaves; to
		// the room it is a plain leave.
		return hub.DisconnectLeft
	}
	s.logAt(slog.LevelDebug, "read failed", "id", s.self.ID, "err", err)
	return hub.Disconnect{Code: hub.CodeReadFailed, Reason: "connection lost"}
}

// Refusals the session itself makes.
var (
	errRateLimited     = errors.New("rate limited: slow down")
	errUnknownType     = errors.New("unknown request type")
	errAlreadyLoggedIn = errors.New("already logged in")
	errRepliesWaiting  = errors.New("too many replies waiting: read them first")
)

// refusalLabel classifies a refusal for metrics, in few enough classes to
// be a label.
func refusalLabel(err error) string {
	switch {
	case errors.Is(err, errRateLimited):
		return "rate_limited"
	case errors.Is(err, errRepliesWaiting):
		return "replies_waiting"
	case errors.Is(err, hub.ErrRecipientBusy):
		return "recipient_busy"
	case errors.Is(err, wire.ErrSpoofedSender):
		return "spoofed_sender"
	case errors.Is(err, wire.ErrBadRequest):
		return "bad_request"
	case errors.Is(err, errUnknownType):
		return "unknown_type"
	case errors.Is(err, hub.ErrNotMember), errors.Is(err, errAlreadyLoggedIn):
		return "wrong_state"
	case errors.Is(err, hub.ErrMessageInvalid):
		return "invalid_message"
	case errors.Is(err, hub.ErrNicknameInvalid), errors.Is(err, hub.ErrNicknameTaken):
		return "nickname"
	}
	return "other"
}

func (s *Session) handle(ctx context.Context, frame []byte) {
	req, err := wire.DecodeRequest(frame)
	if err != nil {
		s.refuse(req, err)
		return
	}
	if req.Type == wire.TypeLogin {
		s.login(ctx, req)
		return
	}
	if !s.loggedIn.Load() {
		s.refuse(req, hub.ErrNotMember)
		return
	}
	if err := s.serve(ctx, req); err != nil {
		s.refuse(req, err)
	}
}

// serve carries out a logged-in member's request. Requests beyond the
// original protocol's are for extended clients, but nothing breaks if an
// original client sends them: their replies are extended objects, which
// only a client that knows the request would send it.
func (s *Session) serve(ctx context.Context, req wire.Request) error {
	id := s.self.ID
	switch req.Type {
	case wire.TypeJoin, wire.TypeLeave, wire.TypeRooms, wire.TypeHistory, wire.TypeMembers, wire.TypeNick, wire.TypeSearch:
		if s.repliesBacklogged() {
			return errRepliesWaiting
		}
	}
	switch req.Type {
	case wire.TypeBroadcast:
		if err := req.CheckSender(id); err != nil {
			s.logAt(slog.LevelWarn, "spoofed sender refused", "id", id, "claimed", string(req.SenderID))
			return err
		}
		return s.hub.Publish(ctx, id, req.Room, req.Message)
	case wire.TypePrivate:
		if req.ToID != 0 {
			return s.hub.PrivateTo(ctx, id, req.ToID, req.Message)
		}
		return s.hub.Private(ctx, id, req.To, req.Message)
	case wire.TypeJoin:
		_, err := s.hub.JoinRoomFrom(ctx, id, req.Room, req.Position())
		return err
	case wire.TypeLeave:
		_, err := s.hub.LeaveRoom(ctx, id, req.Room)
		return err
	case wire.TypeTyping:
		return s.hub.Typing(ctx, id, req.Room)
	case wire.TypeNick:
		self, err := s.hub.Rename(ctx, id, req.Nickname)
		if err != nil {
			return err
		}
		s.self = self
		s.reply(wire.Nick(self))
	case wire.TypeRooms:
		s.reply(wire.Rooms(s.hub.Rooms(id)))
	case wire.TypeHistory:
		limit := req.Limit
		if limit <= 0 || limit > maxHistoryPage {
			limit = maxHistoryPage
		}
		room, events, err := s.hub.RoomHistory(id, req.Room, req.Before, limit)
		if err != nil {
			return err
		}
		s.reply(wire.History(room, req.Before, events))
	case wire.TypeSearch:
		limit := req.Limit
		if limit <= 0 || limit > maxHistoryPage {
			limit = defaultSearchLimit
		}
		room, events, err := s.hub.Search(id, req.Room, req.Query, limit)
		if err != nil {
			return err
		}
		s.reply(wire.Search(room, req.Query, events))
	case wire.TypeMembers:
		room, members, err := s.hub.RoomMembers(id, req.Room)
		if err != nil {
			return err
		}
		if s.isExtended() {
			s.reply(wire.Members(room, members))
			return nil
		}
		names := make([]string, len(members))
		for i, m := range members {
			names[i] = m.Nickname
		}
		s.reply(wire.OriginalPushes(hub.System, "online: "+strings.Join(names, ", "))...)
	default:
		return errUnknownType
	}
	return nil
}

// maxHistoryPage bounds one history or search reply; defaultSearchLimit is
// a search's when it names none.
const (
	maxHistoryPage     = 200
	defaultSearchLimit = 50
)

func (s *Session) login(ctx context.Context, req wire.Request) {
	if s.loggedIn.Load() {
		s.refuse(req, errAlreadyLoggedIn)
		return
	}
	s.mu.Lock()
	s.extended = req.Extended()
	s.mu.Unlock()
	self, err := s.hub.LoginFrom(ctx, s.opts.Peer, req.Nickname, s, req.Position())
	if err != nil {
		s.logAt(slog.LevelInfo, "login refused", "err", err)
		s.opts.Observer.Refused(refusalLabel(err))
		s.reply(wire.LoginError(err.Error(), req.Extended()))
		return
	}
	s.self = self
	s.loggedIn.Store(true)
	s.stopLoginTimer()
	s.opts.Observer.LoggedIn()
}

// refuse answers a request that cannot be carried out: an error object to an
// extended client, a printable System push to a logged-in original client,
// and only a log line to an original client that has not logged in (it cannot
// parse anything else).
func (s *Session) refuse(req wire.Request, err error) {
	s.logAt(slog.LevelDebug, "request refused", "id", s.self.ID, "type", req.Type, "err", err)
	s.opts.Observer.Refused(refusalLabel(err))
	if !s.refusals.Allow() {
		s.mu.Lock()
		s.closeLocked(hub.Disconnect{Code: hub.CodeAbuse, Reason: "too many refused requests"}, false)
		s.mu.Unlock()
		return
	}
	switch {
	case s.isExtended() || req.Extended():
		s.reply(wire.Error(req.Type, err.Error()))
	case s.loggedIn.Load():
		s.reply(wire.OriginalError(err.Error())...)
	}
}

// writeLoop drains the queue to the connection, then exits; once the
// session is closing and the queue is drained it closes the connection.
// For an extended client everything queued at one go goes out in one write;
// an original-protocol client gets one object per write, paced. Only one
// writer runs at a time (Session.writing). With pending, it first writes
// what a flush left in the connection.
func (s *Session) writeLoop(pending bool) {
	defer func() {
		if p := recover(); p != nil {
			s.logAt(slog.LevelError, "panic writing to connection", "panic", p, "stack", string(debug.Stack()))
			s.Abort()
			s.mu.Lock()
			s.closeLocked(hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}, true)
			s.mu.Unlock()
			s.closeConn(hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}, false)
		}
	}()
	var (
		batch    []item
		lingered bool // yielded once with nothing to write
	)
	scratch := framesPool.Get().(*[][]byte)
	defer framesPool.Put(scratch)
	frames := (*scratch)[:0]
	if pending {
		s.write(nil) // on failure the session is closing: the loop closes the connection
	}
	for {
		s.mu.Lock()
		if batch != nil {
			s.recycleLocked(batch)
			batch = nil
		}
		if len(s.items) == 0 && s.closing == nil && !lingered {
			// Under load the next delivery is usually a moment away: yield
			// once before exiting rather than pay for a new goroutine.
			s.mu.Unlock()
			lingered = true
			runtime.Gosched()
			continue
		}
		if len(s.items) == 0 {
			if s.closing == nil {
				s.writing = false // idle: the next enqueue starts a new writer
				s.mu.Unlock()
				return
			}
			d, extended := *s.closing, s.extended
			s.mu.Unlock()
			s.closeConn(d, extended)
			return
		}
		batch, s.items, s.spare = s.items, s.spare, nil
		lingered = false
		s.bytes, s.replyBytes = 0, 0
		extended := s.extended
		s.mu.Unlock()
		s.opts.Observer.Drained(len(batch))

		frames = frames[:0]
		ok := true
		for _, it := range batch {
			if !ok {
				break
			}
			if it.ev == nil {
				frames = append(frames, it.frames...)
				continue
			}
			if it.ev.Kind == hub.KindWelcome && !extended {
				// The login reply goes alone, and then nothing for a while.
				ok = s.writePaced(frames, &s.notBefore) && s.writePaced(wire.EncodeEvent(it.ev, false), &s.notBefore)
				s.notBefore = time.Now().Add(s.opts.LoginGap)
				frames = frames[:0]
				continue
			}
			frames = append(frames, wire.EncodeEvent(it.ev, extended)...)
		}
		clear(batch) // drop references to delivered events
		if ok && extended && len(frames) > 0 {
			ok = s.write(frames)
		} else if ok && !extended {
			ok = s.writePaced(frames, &s.notBefore)
		}
		clear(frames)
		*scratch = frames[:0]
		if !ok {
			// The session is now closing with the queue dropped: the next
			// round closes the connection.
			continue
		}
	}
}

// framesPool holds writers' scratch lists of frames, shared by all
// sessions since a writer lives only while it has something to write.
var framesPool = sync.Pool{New: func() any { return new([][]byte) }}

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

// closeConn tells the client why it is being disconnected, where that helps,
// closes the connection and marks the session done.
func (s *Session) closeConn(d hub.Disconnect, extended bool) {
	defer s.doneOnce.Do(func() { close(s.done) })
	if s.aborted.Load() {
		return
	}
	switch d.Code {
	case hub.CodeSlowConsumer, hub.CodeBadInput, hub.CodeTimeout, hub.CodeAbuse:
		var last [][]byte
		if extended {
			last = [][]byte{wire.Error("", d.Reason)}
		} else {
			last = wire.Notice("disconnected: "+d.Reason, false)
		}
		// Short deadline: a slow consumer may never read it.
		_ = s.conn.WriteFrames(last, time.Now().Add(lastWordsGrace))
	}
	if err := s.conn.Close(d); err != nil {
		s.logAt(slog.LevelDebug, "close failed", "err", err)
	}
}

// writePaced writes frames one per write, none before *notBefore and each
// PushGap after the last, for original-protocol clients.
func (s *Session) writePaced(frames [][]byte, notBefore *time.Time) bool {
	for i := range frames {
		if wait := time.Until(*notBefore); wait > 0 && !s.pause(wait) {
			return false
		}
		if !s.write(frames[i : i+1]) {
			return false
		}
		*notBefore = time.Now().Add(s.opts.PushGap)
	}
	return true
}

// write writes frames; on failure it closes the session and reports false.
func (s *Session) write(frames [][]byte) bool {
	if s.aborted.Load() {
		return false
	}
	deadline := time.Now().Add(s.opts.WriteTimeout)
	s.opts.Observer.Wrote(len(frames))
	if err := s.conn.WriteFrames(frames, deadline); err != nil {
		d := hub.Disconnect{Code: hub.CodeWriteFailed, Reason: "write failed"}
		s.mu.Lock()
		s.closeLocked(d, true)
		s.mu.Unlock()
		s.logAt(slog.LevelDebug, "write failed", "err", err)
		s.conn.Abort()
		return false
	}
	return true
}

// pause waits d, and reports whether the session may still write (it was
// not aborted meanwhile; d is at most LoginGap, so a brief wait).
func (s *Session) pause(d time.Duration) bool {
	time.Sleep(d)
	return !s.aborted.Load()
}
