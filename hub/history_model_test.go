package hub

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// historyModel is the plain-slice reference MemoryHistory must agree with:
// each room a slice of its messages, oldest first, trimmed from the front
// to the count bound and then to the memory bound (keeping the newest).
type historyModel struct {
	rooms map[string][]*Event
}

func (m *historyModel) append(ev *Event, retain, retainBytes int) {
	msgs := append(m.rooms[ev.Room], ev)
	for len(msgs) > retain {
		msgs = msgs[1:]
	}
	total := 0
	for _, e := range msgs {
		total += footprint(e)
	}
	for total > retainBytes && len(msgs) > 1 {
		total -= footprint(msgs[0])
		msgs = msgs[1:]
	}
	m.rooms[ev.Room] = msgs
}

func (m *historyModel) recent(room string, n int) []*Event {
	return m.before(room, 1<<62, n)
}

// before is the latest n messages (not other events) below seq.
func (m *historyModel) before(room string, seq uint64, n int) []*Event {
	var below []*Event
	for _, e := range m.rooms[room] {
		if e.Seq < seq && e.Kind == KindMessage {
			below = append(below, e)
		}
	}
	if n <= 0 {
		return nil
	}
	return below[max(0, len(below)-n):]
}

// after is every event above seq, if what is kept covers it and n allows.
func (m *historyModel) after(room string, seq uint64, n int) ([]*Event, bool) {
	evs := m.rooms[room]
	if len(evs) == 0 {
		return nil, seq == 0
	}
	oldest, newest := evs[0].Seq, evs[len(evs)-1].Seq
	if seq > newest || seq+1 < oldest || newest-seq > uint64(n) {
		return nil, false
	}
	var out []*Event
	for _, e := range evs {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out, true
}

// historyOps drives a MemoryHistory and the model with the operations
// encoded in ops (4 bytes each), failing at the first disagreement. Every
// append is followed by a full comparison of every room.
func historyOps(t *testing.T, ops []byte) {
	t.Helper()
	rooms := []string{"a", "b", "c"}
	h := &MemoryHistory{Retain: 5, RetainBytes: 4000}
	model := &historyModel{rooms: map[string][]*Event{}}
	seqs := map[string]uint64{}
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after %s:\n"+format, append([]any{strings.Join(log, "; ")}, args...)...)
	}
	for len(ops) >= 4 {
		op, a, b := ops[0]%8, int(ops[1]), int(binary.BigEndian.Uint16(ops[2:4]))
		ops = ops[4:]
		room := rooms[a%len(rooms)]
		switch op {
		case 0: // lower or raise the count bound (1 to 64)
			h.Retain = 1 + b%64
			log = append(log, fmt.Sprintf("retain=%d", h.Retain))
			continue
		case 1: // lower or raise the memory bound
			h.RetainBytes = 1 + b*4
			log = append(log, fmt.Sprintf("bytes=%d", h.RetainBytes))
			continue
		}
		// Most operations append a message of a random size: empty to
		// large, so that the memory bound drops several at once.
		seqs[room]++
		kind := KindMessage
		if a%5 == 4 { // some joins, leaves and renames among the messages
			kind = []Kind{KindJoin, KindLeave, KindRename}[b%3]
		}
		ev := &Event{Kind: kind, Room: room, Seq: seqs[room], Text: strings.Repeat("x", b%1200)}
		h.Append(ev)
		model.append(ev, h.Retain, h.RetainBytes)
		log = append(log, fmt.Sprintf("%s+%d(%dB)", room, ev.Seq, len(ev.Text)))
		if len(log) > 40 {
			log = log[len(log)-40:]
		}
		for _, r := range rooms {
			for _, after := range []uint64{0, seqs[r], seqs[r] - min(seqs[r], 3), uint64(b) % (seqs[r] + 2)} {
				for _, n := range []int{2, 1000} {
					got, ok := h.After(r, after, n)
					want, wantOK := model.after(r, after, n)
					if ok != wantOK || !slices.Equal(got, want) {
						fail("room %s: After(%d, %d) = %v %v, model %v %v", r, after, n, seqsOf(got), ok, seqsOf(want), wantOK)
					}
				}
			}
			all := model.recent(r, 1<<20)
			if got := h.Recent(r, 1<<20); !slices.Equal(got, all) {
				fail("room %s: Recent(all) = %v, model %v", r, seqsOf(got), seqsOf(all))
			}
			for _, n := range []int{0, 1, 2, a % 7} {
				if got, want := h.Recent(r, n), model.recent(r, n); !slices.Equal(got, want) {
					fail("room %s: Recent(%d) = %v, model %v", r, n, seqsOf(got), seqsOf(want))
				}
			}
			for _, before := range []uint64{0, 1, seqs[r], seqs[r] + 1, uint64(b) % (seqs[r] + 2)} {
				for _, n := range []int{1, 3, 100} {
					got, _ := h.Before(r, before, n)
					if want := model.before(r, before, n); !slices.Equal(got, want) {
						fail("room %s: Before(%d, %d) = %v, model %v", r, before, n, seqsOf(got), seqsOf(want))
					}
				}
			}
		}
	}
}

func seqsOf(evs []*Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

// TestMemoryHistoryMatchesModel runs seeded random operation sequences; a
// failure names the seed (replay with -run and that seed in the subtest).
func TestMemoryHistoryMatchesModel(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 13))
			ops := make([]byte, 4*400)
			for i := range ops {
				ops[i] = byte(rng.Uint32())
			}
			historyOps(t, ops)
		})
	}
}

// TestMemoryHistoryIssue13 is the sequence that corrupted the ring: the
// memory bound drops old messages while the ring is still growing.
func TestMemoryHistoryIssue13(t *testing.T) {
	h := &MemoryHistory{}
	model := &historyModel{rooms: map[string][]*Event{}}
	for i := 1; i <= 300; i++ {
		text := strings.Repeat("y", 4000)
		if i > 200 {
			text = "short"
		}
		ev := &Event{Kind: KindMessage, Room: "lobby", Seq: uint64(i), Text: text}
		h.Append(ev)
		model.append(ev, DefaultHistoryRetain, DefaultHistoryRetainBytes)
	}
	got, want := h.Recent("lobby", 1000), model.recent("lobby", 1000)
	if !slices.Equal(got, want) {
		t.Fatalf("Recent = %v, model %v", seqsOf(got), seqsOf(want))
	}
	for _, ev := range got {
		if ev == nil {
			t.Fatal("nil event in history")
		}
	}
}

// FuzzMemoryHistory lets the fuzzer search for sequences the model
// disagrees with (go test -fuzz FuzzMemoryHistory ./hub).
func FuzzMemoryHistory(f *testing.F) {
	f.Add([]byte{2, 0, 0, 10, 2, 0, 4, 0, 1, 0, 1, 0, 2, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 3, 2, 1, 2, 0, 2, 1, 0, 5, 2, 1, 3, 0, 2, 1, 0, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4*2000 {
			return
		}
		historyOps(t, ops)
	})
}
