package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"chatroom/hub"
)

// tryConn is a fakeConn that can also write without blocking: each
// TryWriteFrames takes at most budget frames (a socket that is nearly full)
// and keeps the rest, which the next WriteFrames writes first.
type tryConn struct {
	*fakeConn
	budget   int
	failTry  bool
	panicTry bool          // a bug triggered by this client's data
	progress chan struct{} // signalled after each write

	tmu      sync.Mutex // guards the counters and pending
	pending  [][]byte
	tries    int
	partials int
	blocking int
}

// newTryConn returns a tryConn whose blocking writes go through at once.
func newTryConn(budget int) *tryConn {
	c := &tryConn{fakeConn: newFakeConn(), budget: budget, progress: make(chan struct{}, 1)}
	close(c.release)
	return c
}

// hubWithWatcher returns a hub with one member, whose recorder reports joins.
func hubWithWatcher(t *testing.T) (*hub.Hub, *recorder) {
	t.Helper()
	h, err := hub.New(hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	watcher := &recorder{joins: make(chan string, 8)}
	if _, err := h.Login(context.Background(), "watcher", watcher); err != nil {
		t.Fatal(err)
	}
	return h, watcher
}

func (c *tryConn) TryWriteFrames(frames [][]byte) (bool, error) {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.tries++
	if c.failTry {
		return false, errors.New("connection reset")
	}
	if c.panicTry {
		panic("injected: a bug in this client's write path")
	}
	if len(c.pending) > 0 {
		return false, errors.New("TryWriteFrames called with a remainder pending")
	}
	n := min(len(frames), c.budget)
	c.fakeConn.mu.Lock()
	for _, f := range frames[:n] {
		c.written = append(c.written, string(f))
	}
	c.fakeConn.mu.Unlock()
	for _, f := range frames[n:] {
		c.pending = append(c.pending, append([]byte(nil), f...))
	}
	defer c.signal()
	if n < len(frames) {
		c.partials++
		return false, nil
	}
	return true, nil
}

func (c *tryConn) signal() {
	select {
	case c.progress <- struct{}{}:
	default:
	}
}

func (c *tryConn) WriteFrames(frames [][]byte, deadline time.Time) error {
	c.tmu.Lock()
	pending := c.pending
	c.pending = nil
	c.blocking++
	c.tmu.Unlock()
	defer c.signal()
	return c.fakeConn.WriteFrames(append(pending, frames...), deadline)
}

// TestFlusherWritesEverythingInOrder sends bursts through a Flusher to a
// connection that takes only part of each at once: whatever a flush leaves
// is written by a writer goroutine before anything newer, so the client sees
// every message once, in order.
func TestFlusherWritesEverythingInOrder(t *testing.T) {
	ctx := context.Background()
	h, watcher := hubWithWatcher(t)
	talker, _ := h.Login(ctx, "talker", &recorder{})

	f := NewFlusher(2)
	defer f.Close()
	conn := newTryConn(3)
	done := runSession(t, h, conn, Options{Flusher: f, QueueMessages: 4096, QueueBytes: 16 << 20})
	conn.reads <- []byte(`{"type":"login","nickname":"reader","protocol":1}`)
	waitJoin(t, watcher, "reader")

	const messages = 301
	for i := range messages {
		if i == messages-1 {
			// The last one meets a full socket: only a writer that
			// takes over can deliver it, with nothing after to push it out.
			conn.tmu.Lock()
			conn.budget = 0
			conn.tmu.Unlock()
		}
		if err := h.Publish(ctx, talker.ID, "", fmt.Sprintf("m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	got := conn.messages()
	for len(got) < messages {
		select {
		case <-conn.progress:
			got = conn.messages()
		case <-deadline:
			t.Fatalf("client got %d messages, want %d", len(got), messages)
		}
	}
	if len(got) != messages {
		t.Fatalf("client got %d messages, want %d", len(got), messages)
	}
	for i, m := range got {
		if want := fmt.Sprintf("m%03d", i); m != want {
			t.Fatalf("message %d is %q, want %q: out of order or repeated", i, m, want)
		}
	}
	conn.tmu.Lock()
	tries, partials, blocking := conn.tries, conn.partials, conn.blocking
	conn.tmu.Unlock()
	if tries == 0 || partials == 0 || blocking == 0 {
		t.Fatalf("tries %d, partial writes %d, blocking writes %d: want every path taken", tries, partials, blocking)
	}
	conn.Abort()
	waitDone(t, done)
}

// TestFlusherWriteErrorEndsTheSession: a failed non-blocking write closes the
// connection and the member leaves, like a failed blocking write.
func TestFlusherWriteErrorEndsTheSession(t *testing.T) {
	ctx := context.Background()
	h, watcher := hubWithWatcher(t)
	f := NewFlusher(1)
	defer f.Close()
	conn := newTryConn(1 << 20)
	done := runSession(t, h, conn, Options{Flusher: f})
	conn.reads <- []byte(`{"type":"login","nickname":"doomed","protocol":1}`)
	waitJoin(t, watcher, "doomed")
	conn.tmu.Lock()
	conn.failTry = true
	conn.tmu.Unlock()
	talker, _ := h.Login(ctx, "talker", &recorder{})
	_ = h.Publish(ctx, talker.ID, "", "hello")
	waitDone(t, done)
	if h.Len() != 2 {
		t.Fatalf("%d members, want 2: the failed one gone", h.Len())
	}
}

// TestFlusherSurvivesAPanic: a panic while one member's queue is flushed (a
// bug that its data triggers) ends that member's connection only. The
// Flusher's goroutine lives on and keeps writing everyone else's queues,
// and the member's leave is announced.
func TestFlusherSurvivesAPanic(t *testing.T) {
	ctx := context.Background()
	h, watcher := hubWithWatcher(t)
	f := NewFlusher(1) // one goroutine: if it died, nobody would be written to
	defer f.Close()

	victim, bystander := newTryConn(1<<20), newTryConn(1<<20)
	victimDone := runSession(t, h, victim, Options{Flusher: f})
	bystanderDone := runSession(t, h, bystander, Options{Flusher: f})
	victim.reads <- []byte(`{"type":"login","nickname":"victim","protocol":1}`)
	waitJoin(t, watcher, "victim")
	bystander.reads <- []byte(`{"type":"login","nickname":"bystander","protocol":1}`)
	waitJoin(t, watcher, "bystander")

	victim.tmu.Lock()
	victim.panicTry = true
	flushedBefore := victim.tries
	victim.tmu.Unlock()
	talker, _ := h.Login(ctx, "talker", &recorder{})
	if err := h.Publish(ctx, talker.ID, "", "m000"); err != nil {
		t.Fatal(err)
	}
	waitDone(t, victimDone)
	if c := victim.closedWith(); c == nil || c.Code != hub.CodeInternal {
		t.Fatalf("victim closed with %v, want an internal error", c)
	}

	// The same Flusher goroutine still writes the others' queues.
	for i := 1; i <= 50; i++ {
		if err := h.Publish(ctx, talker.ID, "", fmt.Sprintf("m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	for len(bystander.messages()) < 51 {
		select {
		case <-bystander.progress:
		case <-deadline:
			t.Fatalf("bystander got %d messages after the panic, want 51", len(bystander.messages()))
		}
	}
	victim.tmu.Lock()
	flushedAfter := victim.tries
	victim.tmu.Unlock()
	if flushedAfter != flushedBefore+1 {
		t.Fatalf("the victim's connection was flushed %d times after the panic, want once (then dropped)", flushedAfter-flushedBefore)
	}
	if h.Len() != 3 {
		t.Fatalf("%d members, want 3: the victim gone", h.Len())
	}
	bystander.Abort()
	waitDone(t, bystanderDone)
}

// messages returns the text of each chat message written, in order.
func (c *fakeConn) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, w := range c.written {
		if i := strings.Index(w, `"message":"m`); i >= 0 && strings.Contains(w, `"type":"message"`) {
			out = append(out, w[i+len(`"message":"`):i+len(`"message":"`)+4])
		}
	}
	return out
}
