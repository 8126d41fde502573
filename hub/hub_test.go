package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"chatroom/hub"
)

// recorder is an in-memory subscriber that keeps everything delivered.
type recorder struct {
	mu     sync.Mutex
	events []*hub.Event
}

func (r *recorder) Deliver(ev *hub.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []*hub.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*hub.Event(nil), r.events...)
}

func newHub(t *testing.T) *hub.Hub {
	t.Helper()
	h, err := hub.New(hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestJoinWelcomesFirstAndAnnounces(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	alice, bob := &recorder{}, &recorder{}
	a, err := h.Join(ctx, "  alice ", alice)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != 1 || a.Nickname != "alice" {
		t.Fatalf("alice = %+v, want id 1 and trimmed nickname", a)
	}
	b, err := h.Join(ctx, "bob", bob)
	if err != nil {
		t.Fatal(err)
	}
	got := bob.snapshot()
	if len(got) == 0 || got[0].Kind != hub.KindWelcome || got[0].Subject != b || len(got[0].Members) != 2 {
		t.Fatalf("bob's first event = %+v, want a welcome listing 2 members", got)
	}
	var joins []string
	for _, ev := range alice.snapshot() {
		if ev.Kind == hub.KindJoin {
			joins = append(joins, ev.Subject.Nickname)
		}
	}
	if fmt.Sprint(joins) != "[alice bob]" {
		t.Fatalf("alice saw joins %v, want [alice bob] (the subscriber filters its own)", joins)
	}
}

func TestNicknameRules(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	if _, err := h.Join(ctx, "Alice", &recorder{}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]error{
		"":                      hub.ErrNicknameInvalid,
		"   ":                   hub.ErrNicknameInvalid,
		strings.Repeat("x", 33): hub.ErrNicknameInvalid,
		"bad\x07bell":           hub.ErrNicknameInvalid,
		"rtl\u202eoverride":     hub.ErrNicknameInvalid,
		"ALICE":                 hub.ErrNicknameTaken,
		"alice":                 hub.ErrNicknameTaken,
		"system":                hub.ErrNicknameTaken,
		strings.Repeat("字", 32): nil,
		"bob smith":             nil,
	}
	for nick, want := range cases {
		_, err := h.Join(ctx, nick, &recorder{})
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("Join(%q) = %v, want %v", nick, err, want)
		}
	}
}

func TestIDsAreNeverReused(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	seen := map[int64]bool{}
	for i := range 50 {
		id, err := h.Join(ctx, "same", &recorder{})
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		if seen[id.ID] || id.ID <= 0 {
			t.Fatalf("id %d reused or not positive", id.ID)
		}
		seen[id.ID] = true
		h.Leave(ctx, id.ID, "left")
	}
}

func TestEveryMemberSeesOneOrder(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	const members, perSender = 8, 200
	recs := make([]*recorder, members)
	ids := make([]int64, members)
	for i := range recs {
		recs[i] = &recorder{}
		id, err := h.Join(ctx, fmt.Sprintf("m%d", i), recs[i])
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id.ID
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for n := range perSender {
				if err := h.Publish(ctx, id, fmt.Sprintf("%d-%d", id, n)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Compare the message sequence of the first member with every other.
	seqOf := func(r *recorder) []uint64 {
		var out []uint64
		for _, ev := range r.snapshot() {
			if ev.Kind == hub.KindMessage {
				out = append(out, ev.Seq)
			}
		}
		return out
	}
	want := seqOf(recs[0])
	if len(want) != members*perSender {
		t.Fatalf("member 0 got %d messages, want %d", len(want), members*perSender)
	}
	for i := 1; i < len(want); i++ {
		if want[i] <= want[i-1] {
			t.Fatalf("sequence not increasing at %d: %d after %d", i, want[i], want[i-1])
		}
	}
	for i, r := range recs[1:] {
		if got := seqOf(r); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("member %d saw a different order", i+1)
		}
	}
}

func TestPublishRefusals(t *testing.T) {
	ctx := context.Background()
	h, err := hub.New(hub.Options{MaxMessageBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := h.Join(ctx, "a", &recorder{})
	for _, text := range []string{"", "  \n", "01234567890", "esc\x1b[2J", "\xff"} {
		if err := h.Publish(ctx, a.ID, text); !errors.Is(err, hub.ErrMessageInvalid) {
			t.Errorf("Publish(%q) = %v, want ErrMessageInvalid", text, err)
		}
	}
	if err := h.Publish(ctx, a.ID, "ok\tline\n2"); err != nil {
		t.Errorf("tab and newline refused: %v", err)
	}
	if err := h.Publish(ctx, 999, "hi"); !errors.Is(err, hub.ErrNotMember) {
		t.Errorf("Publish from a stranger = %v, want ErrNotMember", err)
	}
}

func TestLeaveAnnouncedAndShutdown(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	watcher := &recorder{}
	h.Join(ctx, "watcher", watcher)
	gone, _ := h.Join(ctx, "gone", &recorder{})
	h.Leave(ctx, gone.ID, "slow consumer")
	h.Leave(ctx, gone.ID, "again") // no-op
	var leaves []*hub.Event
	for _, ev := range watcher.snapshot() {
		if ev.Kind == hub.KindLeave {
			leaves = append(leaves, ev)
		}
	}
	if len(leaves) != 1 || leaves[0].Subject != gone || leaves[0].Reason != "slow consumer" {
		t.Fatalf("leaves = %+v, want one for %v with its reason", leaves, gone)
	}
	if h.Len() != 1 {
		t.Fatalf("Len = %d, want 1", h.Len())
	}
	if err := h.Shutdown(ctx, "bye"); err != nil {
		t.Fatal(err)
	}
	evs := watcher.snapshot()
	if last := evs[len(evs)-1]; last.Kind != hub.KindNotice || last.Text != "bye" {
		t.Fatalf("last event %+v, want the shutdown notice", last)
	}
	if _, err := h.Join(ctx, "late", &recorder{}); !errors.Is(err, hub.ErrShuttingDown) {
		t.Fatalf("join during shutdown = %v", err)
	}
}
