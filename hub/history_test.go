package hub

import (
	"fmt"
	"strings"
	"testing"
)

func TestMemoryHistoryKeepsTheLatestInOrder(t *testing.T) {
	h := &MemoryHistory{Retain: 5, RetainBytes: 4000}
	for i := 1; i <= 12; i++ {
		h.Append(&Event{Kind: KindMessage, Room: "r", Seq: uint64(i), Text: fmt.Sprint(i)})
	}
	seqs := func(evs []*Event) string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev.Text)
		}
		return strings.Join(out, ",")
	}
	if got := seqs(h.Recent("r", 3)); got != "10,11,12" {
		t.Errorf("Recent(3) = %s", got)
	}
	if got := seqs(h.Recent("r", 100)); got != "8,9,10,11,12" {
		t.Errorf("Recent(all) = %s, want the 5 retained", got)
	}
	if got := seqs(must(h.Before("r", 11, 2))); got != "9,10" {
		t.Errorf("Before(11, 2) = %s", got)
	}
	if got := seqs(must(h.Before("r", 8, 2))); got != "" {
		t.Errorf("Before the oldest retained = %s", got)
	}
	if got := seqs(h.Recent("other", 3)); got != "" {
		t.Errorf("another room = %s", got)
	}
	// The byte bound drops the oldest too, but keeps the newest message.
	h.Append(&Event{Kind: KindMessage, Room: "r", Seq: 13, Text: strings.Repeat("x", 3999)})
	if got := h.Recent("r", 100); len(got) != 1 || got[0].Seq != 13 {
		t.Errorf("after a big message: %d messages", len(got))
	}
	h.Append(&Event{Kind: KindMessage, Room: "r", Seq: 14, Text: "yy"})
	if got := seqs(h.Recent("r", 100)); got != "yy" {
		t.Errorf("after the bytes bound: %s", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
