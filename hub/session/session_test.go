package session

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"chatroom/hub"
)

// fakeConn is an in-memory Conn whose writes can be held up, standing in for
// a peer that stops reading.
type fakeConn struct {
	reads   chan []byte
	release chan struct{} // closed: writes proceed

	mu      sync.Mutex
	written []string
	closed  *hub.Disconnect
	aborted bool
	gone    chan struct{}
	once    sync.Once
}

func newFakeConn() *fakeConn {
	c := &fakeConn{reads: make(chan []byte, 16), release: make(chan struct{}), gone: make(chan struct{})}
	return c
}

func (c *fakeConn) ReadFrame() ([]byte, error) {
	select {
	case f := <-c.reads:
		return f, nil
	case <-c.gone:
		return nil, io.EOF
	}
}

func (c *fakeConn) WriteFrames(frames [][]byte, deadline time.Time) error {
	select {
	case <-c.release:
	case <-c.gone:
		return io.ErrClosedPipe
	case <-time.After(time.Until(deadline)):
		return io.ErrShortWrite
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range frames {
		c.written = append(c.written, string(f))
	}
	return nil
}

func (c *fakeConn) Close(d hub.Disconnect) error {
	c.mu.Lock()
	if c.closed == nil {
		c.closed = &d
	}
	c.mu.Unlock()
	c.once.Do(func() { close(c.gone) })
	return nil
}

func (c *fakeConn) Abort() {
	c.mu.Lock()
	c.aborted = true
	c.mu.Unlock()
	c.once.Do(func() { close(c.gone) })
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSlowConsumerGetsLastWordsAndIsAnnounced(t *testing.T) {
	ctx := context.Background()
	h, watcher := hubWithWatcher(t)
	talker, _ := h.Login(ctx, "talker", &recorder{})

	conn := newFakeConn()
	s := New(h, conn, Options{QueueMessages: 8})
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	conn.reads <- []byte(`{"type":"login","nickname":"stuck","protocol":1}`)
	waitJoin(t, watcher, "stuck")
	// The writer is held up (the peer reads nothing); the room goes on.
	for i := range 20 {
		if err := h.Publish(ctx, talker.ID, "", "message"); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	close(conn.release) // the peer reads again: it must get the reason, then the close
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	last := conn.written[len(conn.written)-1]
	if !strings.Contains(last, `"type":"error"`) || !strings.Contains(last, "slow consumer") {
		t.Fatalf("last frame %q, want the slow-consumer error", last)
	}
	if conn.closed == nil || conn.closed.Code != hub.CodeSlowConsumer {
		t.Fatalf("closed with %v, want CodeSlowConsumer", conn.closed)
	}
	var reason string
	for _, ev := range watcher.snapshot() {
		if ev.Kind == hub.KindLeave && ev.Subject.Nickname == "stuck" {
			reason = ev.Reason
		}
	}
	if !strings.Contains(reason, "slow consumer") {
		t.Fatalf("leave reason %q, want slow consumer", reason)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []*hub.Event
	joins  chan string // if set, receives the nickname of each join
}

func (r *recorder) Busy() bool { return false }

func (r *recorder) Deliver(ev *hub.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	if r.joins != nil && ev.Kind == hub.KindJoin {
		r.joins <- ev.Subject.Nickname
	}
}

func (r *recorder) snapshot() []*hub.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*hub.Event(nil), r.events...)
}

// waitJoin waits until r has seen nick join.
func waitJoin(t *testing.T, r *recorder, nick string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-r.joins:
			if got == nick {
				return
			}
		case <-deadline:
			t.Fatalf("%s never joined", nick)
		}
	}
}

// countingObserver records disconnect codes.
type countingObserver struct {
	nopObserver
	mu    sync.Mutex
	codes []hub.DisconnectCode
}

func (o *countingObserver) Disconnected(c hub.DisconnectCode) {
	o.mu.Lock()
	o.codes = append(o.codes, c)
	o.mu.Unlock()
}

func runSession(t *testing.T, h *hub.Hub, conn Conn, opts Options) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		New(h, conn, opts).Run(context.Background())
		close(done)
	}()
	return done
}

func waitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
}

func TestStuckPeerIsCutOffByTheWriteDeadline(t *testing.T) {
	h, _ := hub.New(hub.Options{})
	obs := &countingObserver{}
	conn := newFakeConn() // never released: every write blocks until its deadline
	done := runSession(t, h, conn, Options{WriteTimeout: 50 * time.Millisecond, Observer: obs})
	conn.reads <- []byte(`{"type":"login","nickname":"stuck","protocol":1}`)
	waitDone(t, done)
	if h.Len() != 0 || len(obs.codes) != 1 || obs.codes[0] != hub.CodeWriteFailed {
		t.Fatalf("members %d, disconnects %v: want the stuck member gone for a failed write", h.Len(), obs.codes)
	}
}

// panicConn panics on its second read, as a bug in a front might.
type panicConn struct {
	*fakeConn
	count int
}

func (p *panicConn) ReadFrame() ([]byte, error) {
	p.count++
	if p.count == 2 {
		panic("bug")
	}
	return p.fakeConn.ReadFrame()
}

func TestPanicClosesOnlyThatConnection(t *testing.T) {
	h, _ := hub.New(hub.Options{})
	watcher := &recorder{joins: make(chan string, 8)}
	h.Login(context.Background(), "watcher", watcher)
	conn := &panicConn{fakeConn: newFakeConn()}
	close(conn.release)
	done := runSession(t, h, conn, Options{})
	conn.reads <- []byte(`{"type":"login","nickname":"buggy","protocol":1}`)
	waitDone(t, done)
	conn.mu.Lock()
	aborted := conn.aborted
	conn.mu.Unlock()
	if !aborted || h.Len() != 1 {
		t.Fatalf("aborted=%v members=%d: want the connection closed and its member gone", aborted, h.Len())
	}
	var reason string
	for _, ev := range watcher.snapshot() {
		if ev.Kind == hub.KindLeave {
			reason = ev.Reason
		}
	}
	if reason != "internal error" {
		t.Fatalf("leave reason %q", reason)
	}
}

// The answer to joining a big room (its member list and history) may be
// larger than the byte bound; it is not a sign of falling behind.
func TestJoinReplyIsNotBoundedLikeTraffic(t *testing.T) {
	h, _ := hub.New(hub.Options{})
	conn := newFakeConn()
	close(conn.release)
	done := runSession(t, h, conn, Options{QueueBytes: 64})
	conn.reads <- []byte(`{"type":"login","nickname":"big","protocol":1}`)
	deadline := time.After(10 * time.Second)
	for {
		conn.mu.Lock()
		n := len(conn.written)
		conn.mu.Unlock()
		if n >= 2 { // the login reply and the lobby's "joined"
			break
		}
		select {
		case <-deadline:
			t.Fatalf("only %d frames written: the join reply was refused as too big", n)
		case <-time.After(time.Millisecond):
		}
	}
	conn.Abort()
	waitDone(t, done)
	if len(conn.codesClosed()) != 0 {
		t.Fatal("closed as a slow consumer")
	}
}

func (c *fakeConn) codesClosed() []hub.DisconnectCode {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed != nil && c.closed.Code == hub.CodeSlowConsumer {
		return []hub.DisconnectCode{c.closed.Code}
	}
	return nil
}

// closedWith returns the reason the connection was closed with, if it was.
func (c *fakeConn) closedWith() *hub.Disconnect {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
