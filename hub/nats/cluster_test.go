package nats

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"chatroom/hub"
)

func TestMain(m *testing.M) {
	var ignore []goleak.Option
	for _, f := range LeakedByTheClient {
		ignore = append(ignore, goleak.IgnoreTopFunction(f))
	}
	goleak.VerifyTestMain(m, ignore...)
}

const waitTime = 10 * time.Second

// startServer runs an embedded NATS server with JetStream in a temporary
// directory.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(waitTime) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// recorder is a node's hub as far as delivery goes: it keeps what it gets.
type recorder struct {
	mu     sync.Mutex
	events []*hub.Event
	change chan struct{}
}

func (r *recorder) deliver(ev *hub.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	select {
	case r.change <- struct{}{}:
	default:
	}
}

// await waits until ok holds for what was delivered.
func (r *recorder) await(t *testing.T, what string, ok func([]*hub.Event) bool) []*hub.Event {
	t.Helper()
	deadline := time.After(waitTime)
	for {
		r.mu.Lock()
		evs := append([]*hub.Event(nil), r.events...)
		r.mu.Unlock()
		if ok(evs) {
			return evs
		}
		select {
		case <-r.change:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got %d events", what, len(evs))
		}
	}
}

// startNode opens and starts a Cluster node that records its deliveries.
func startNode(t *testing.T, ns *server.Server, name string) (*Cluster, *recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	c, err := Open(ctx, Options{URL: ns.ClientURL(), Name: name, DeadAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	r := &recorder{change: make(chan struct{}, 1)}
	if err := c.Subscribe(r.deliver); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c, r
}

func message(room, text string) *hub.Event {
	return &hub.Event{Kind: hub.KindMessage, Room: room, From: hub.Identity{ID: 1, Nickname: "a"}, Text: text}
}

// TestLostAnswerIsNotStoredTwice: a batch is stored but its answer never
// comes (NATS went away at that moment). Trying again, the publisher finds
// it stored, and neither stores it twice nor reports it failed.
func TestLostAnswerIsNotStoredTwice(t *testing.T) {
	ns := startServer(t)
	c, r := startNode(t, ns, "a")
	var lost atomic.Bool
	c.loseAnswer = func() bool { return lost.CompareAndSwap(false, true) } // the first answer only
	ctx := context.Background()
	// publishRoom waits for the outcome (Publish would return at once).
	if err := c.publishRoom(ctx, []*hub.Event{message("lobby", "once")}); err != nil {
		t.Fatalf("publish whose answer was lost: %v", err)
	}
	if err := c.publishRoom(ctx, []*hub.Event{message("lobby", "twice?")}); err != nil {
		t.Fatal(err)
	}
	evs := r.await(t, "both messages", func(evs []*hub.Event) bool { return len(evs) >= 2 })
	if !lost.Load() {
		t.Fatal("the answer was not lost: the test tested nothing")
	}
	if len(evs) != 2 || evs[0].Text != "once" || evs[0].Seq != 1 || evs[1].Text != "twice?" || evs[1].Seq != 2 {
		for _, ev := range evs {
			t.Logf("seq %d %q", ev.Seq, ev.Text)
		}
		t.Fatal("want once (seq 1) then twice? (seq 2)")
	}
	info, err := c.str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("%d messages stored, want 2", info.State.Msgs)
	}
}

// TestConcurrentPublishersShareOneOrder: two nodes publish to one room at
// once, in many small batches; both deliver the same events in the same
// order with seq 1..n, each once.
func TestConcurrentPublishersShareOneOrder(t *testing.T) {
	ns := startServer(t)
	a, ra := startNode(t, ns, "a")
	b, rb := startNode(t, ns, "b")
	const each = 200
	var wg sync.WaitGroup
	for _, c := range []*Cluster{a, b} {
		for s := range 4 {
			wg.Go(func() {
				for i := range each / 4 {
					if err := c.Publish(context.Background(), message("room", fmt.Sprintf("%s-%d-%d", c.Name(), s, i))); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	full := func(evs []*hub.Event) bool { return len(evs) >= 2*each }
	ea, eb := ra.await(t, "every message at a", full), rb.await(t, "every message at b", full)
	seen := map[string]bool{}
	for i := range ea {
		if ea[i].Seq != uint64(i+1) || eb[i].Seq != ea[i].Seq || eb[i].Text != ea[i].Text {
			t.Fatalf("event %d: a has seq %d %q, b has seq %d %q", i, ea[i].Seq, ea[i].Text, eb[i].Seq, eb[i].Text)
		}
		if seen[ea[i].Text] {
			t.Fatalf("%q twice", ea[i].Text)
		}
		seen[ea[i].Text] = true
	}
}

// TestNicknameOfADeadNodeIsTakenOver: a nickname claimed by a node that
// stopped heartbeating is free once the node is dead, and so is one held
// by a node nobody has heard of; one held by a live node is not.
func TestNicknameOfADeadNodeIsTakenOver(t *testing.T) {
	ns := startServer(t)
	a, _ := startNode(t, ns, "a")
	b, _ := startNode(t, ns, "b")
	ctx := context.Background()
	if _, err := b.nicks.Create(ctx, nickKV("ghost"), []byte("gone 7")); err != nil {
		t.Fatal(err)
	}
	claimEventually(t, b, "ghost", b.FirstID()+3)
	if err := a.Claim(ctx, "kim", hub.Identity{ID: a.FirstID() + 1, Nickname: "kim"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(ctx, "kim", hub.Identity{ID: b.FirstID() + 1, Nickname: "kim"}); err != hub.ErrNicknameTaken {
		t.Fatalf("claim of a live node's nickname: %v, want ErrNicknameTaken", err)
	}
	// a dies without a word: its goroutines stop, its connection closes.
	a.cancel()
	a.workers.Wait()
	a.nc.Close()
	claimEventually(t, b, "kim", b.FirstID()+2)
}

// claimEventually claims key for id on c, retrying while it is taken
// until the deadline: a holder's death takes DeadAfter, and there is no
// event to wait on but time.
func claimEventually(t *testing.T, c *Cluster, key string, id int64) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for {
		err := c.Claim(context.Background(), key, hub.Identity{ID: id, Nickname: key})
		if err == nil {
			return
		}
		if err != hub.ErrNicknameTaken || time.Now().After(deadline) {
			t.Fatalf("claim %q: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStuckConsumerIsReopened: a consumer that stops delivering (here it
// drops what it reads) is noticed, since the stream has moved past what
// was delivered, and reopened after the last event delivered: nothing is
// missed.
func TestStuckConsumerIsReopened(t *testing.T) {
	ns := startServer(t)
	c, r := startNode(t, ns, "a")
	ctx := context.Background()
	if err := c.publishRoom(ctx, []*hub.Event{message("lobby", "first")}); err != nil {
		t.Fatal(err)
	}
	r.await(t, "the first message", func(evs []*hub.Event) bool { return len(evs) == 1 })
	c.loseReads.Store(2)
	for _, text := range []string{"second", "third"} {
		if err := c.publishRoom(ctx, []*hub.Event{message("lobby", text)}); err != nil {
			t.Fatal(err)
		}
	}
	evs := r.await(t, "the messages the consumer lost", func(evs []*hub.Event) bool { return len(evs) >= 3 })
	if len(evs) != 3 || evs[1].Text != "second" || evs[2].Text != "third" || evs[2].Seq != 3 {
		t.Fatalf("delivered %d events, want first, second, third", len(evs))
	}
}
