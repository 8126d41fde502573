package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

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

	// A failing journal refuses, and delivers nothing of what it refused.
	sender, _ := h.Login(ctx, "sender", &recorder{})
	before := len(watcher.snapshot())
	j.setFail(true)
	if err := h.Publish(ctx, sender.ID, "", "lost"); !errors.Is(err, hub.ErrNotSaved) {
		t.Fatalf("publish while the journal fails: %v, want ErrNotSaved", err)
	}
	if got := watcher.snapshot()[before:]; len(got) != 0 {
		t.Fatalf("delivered %d events that were not written", len(got))
	}
	j.setFail(false)
	if err := h.Publish(ctx, sender.ID, "", "kept"); err != nil {
		t.Fatal(err)
	}
	got := watcher.snapshot()
	last := got[len(got)-1]
	if last.Text != "kept" || last.Seq != want+1 { // want: sender's join
		t.Fatalf("after the failure: %q seq %d, want \"kept\" seq %d (no hole)", last.Text, last.Seq, want+1)
	}
}
