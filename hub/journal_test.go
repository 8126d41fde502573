package hub_test

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

// memJournal is a Journal in memory that can be made to fail.
type memJournal struct {
	mu     sync.Mutex
	rooms  map[string][]uint64
	fail   bool
	writes int
}

func (j *memJournal) LastSeq(room string) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.rooms[room]
	if len(s) == 0 {
		return 0, nil
	}
	return s[len(s)-1], nil
}

func (j *memJournal) Write(evs []*hub.Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fail {
		return errors.New("disk full")
	}
	j.writes++
	for _, ev := range evs {
		if s := j.rooms[ev.Room]; len(s) > 0 && s[len(s)-1]+1 != ev.Seq {
			return fmt.Errorf("room %s: seq %d after %d", ev.Room, ev.Seq, s[len(s)-1])
		}
		j.rooms[ev.Room] = append(j.rooms[ev.Room], ev.Seq)
	}
	return nil
}

func (j *memJournal) setFail(f bool) { j.mu.Lock(); j.fail = f; j.mu.Unlock() }

// TestJournaledBrokerWritesBeforeDeliveringAndRewindsOnFailure: every event
// a member sees was written first, in one contiguous order per room, under
// concurrent publishers (in batches: group commit); a failed write refuses
// the events it held and the next ones take their seqs, so the order has
// no hole; and a room's order continues from what the journal holds.
func TestJournaledBrokerWritesBeforeDeliveringAndRewindsOnFailure(t *testing.T) {
	ctx := context.Background()
	j := &memJournal{rooms: map[string][]uint64{"lobby": {1, 2, 3}}}
	b := hub.NewJournaledBroker(j)
	defer b.Close()
	h, err := hub.New(hub.Options{Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	watcher := &recorder{}
	if _, err := h.Login(ctx, "watcher", watcher); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			self, err := h.Login(ctx, fmt.Sprint("w", w), &recorder{})
			if err != nil {
				t.Error(err)
				return
			}
			for i := range 50 {
				if err := h.Publish(ctx, self.ID, "", fmt.Sprint(i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// 409 events were published after the journal's 3: the watcher's join,
	// 8 others and 400 messages. Publish returns before delivery.
	awaitEvent(t, watcher, func(ev *hub.Event) bool { return ev.Seq == 412 })
	seen := watcher.snapshot()
	want := uint64(4) // continues after the journal's 3
	for _, ev := range seen {
		if ev.Seq == 0 {
			continue
		}
		if ev.Seq != want {
			t.Fatalf("watcher saw seq %d, want %d", ev.Seq, want)
		}
		want++
	}
	if last, _ := j.LastSeq("lobby"); last != want-1 {
		t.Fatalf("journal holds up to %d, watcher saw up to %d", last, want-1)
	}
	t.Logf("%d events in %d writes", want-4, j.writes)

	// A failing journal refuses: the sender is told, nobody gets the
	// message, and the next one takes its seq.
	senderRec := &recorder{}
	sender, _ := h.Login(ctx, "sender", senderRec)
	awaitEvent(t, watcher, func(ev *hub.Event) bool { return ev.Kind == hub.KindJoin && ev.Subject == sender })
	before := len(watcher.snapshot())
	j.setFail(true)
	if err := h.Publish(ctx, sender.ID, "", "lost"); err != nil {
		t.Fatal(err)
	}
	refused := awaitKind(t, senderRec, hub.KindRefused)
	if refused.Text != "lost" || !strings.Contains(refused.Reason, "could not save") {
		t.Fatalf("refusal %+v", refused)
	}
	if got := watcher.snapshot()[before:]; len(got) != 0 {
		t.Fatalf("delivered %d events that were not written", len(got))
	}
	j.setFail(false)
	if err := h.Publish(ctx, sender.ID, "", "kept"); err != nil {
		t.Fatal(err)
	}
	last := awaitText(t, watcher, "kept")
	if last.Seq != want+1 { // want: the sender's join, which was written
		t.Fatalf("after the failure: \"kept\" has seq %d, want %d (no hole)", last.Seq, want+1)
	}
}

// awaitKind waits for rec to receive an event of kind k.
func awaitKind(t *testing.T, rec *recorder, k hub.Kind) *hub.Event {
	t.Helper()
	return awaitEvent(t, rec, func(ev *hub.Event) bool { return ev.Kind == k })
}

// awaitText waits for rec to receive a message with text.
func awaitText(t *testing.T, rec *recorder, text string) *hub.Event {
	t.Helper()
	return awaitEvent(t, rec, func(ev *hub.Event) bool { return ev.Kind == hub.KindMessage && ev.Text == text })
}

func awaitEvent(t *testing.T, rec *recorder, ok func(*hub.Event) bool) *hub.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, ev := range rec.snapshot() {
			if ok(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for an event")
		}
		time.Sleep(time.Millisecond) // a recorder has no event to wait on
	}
}
