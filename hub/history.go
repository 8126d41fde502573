package hub

import (
	"sort"
	"sync"
)

// History keeps rooms' recent messages for members who join later and for
// scrolling back. The hub appends every message in its room's order; reads
// may come from any goroutine. MemoryHistory is the in-process store; a
// persistent one satisfies the same interface.
type History interface {
	// Append records a message event (its Room and Seq are set).
	Append(ev *Event)
	// Recent returns up to n of the room's latest messages, oldest first.
	Recent(room string, n int) []*Event
	// Before returns up to n of the room's messages with Seq below seq,
	// oldest first.
	Before(room string, seq uint64, n int) []*Event
}

// Defaults for MemoryHistory.
const (
	DefaultHistoryRetain      = 1000
	DefaultHistoryRetainBytes = 512 << 10
)

// MemoryHistory keeps the latest messages of each room in memory, bounded
// per room by count and by bytes of text. Its zero value keeps the defaults.
type MemoryHistory struct {
	// Retain is how many messages a room keeps. Default DefaultHistoryRetain.
	Retain int
	// RetainBytes bounds the text a room keeps. Default
	// DefaultHistoryRetainBytes.
	RetainBytes int

	mu    sync.Mutex
	rooms map[string]*roomHistory
}

// roomHistory is a ring of a room's latest messages, oldest at head.
type roomHistory struct {
	ring  []*Event // grows up to the retain count, then wraps
	head  int      // index of the oldest message
	n     int      // messages held
	bytes int
}

func (r *roomHistory) at(i int) *Event { return r.ring[(r.head+i)%len(r.ring)] }

func (r *roomHistory) push(ev *Event, retain int) {
	if r.n < len(r.ring) || len(r.ring) >= retain {
		if r.n == len(r.ring) { // full: overwrite the oldest
			r.bytes -= len(r.ring[r.head].Text)
			r.ring[r.head] = ev
			r.head = (r.head + 1) % len(r.ring)
		} else {
			r.ring[(r.head+r.n)%len(r.ring)] = ev
			r.n++
		}
	} else { // grow (only while not yet wrapped: head is 0)
		r.ring = append(r.ring, ev)
		r.ring = r.ring[:cap(r.ring)]
		if len(r.ring) > retain {
			r.ring = r.ring[:retain]
		}
		r.n++
	}
	r.bytes += len(ev.Text)
}

// dropOldest forgets the oldest message.
func (r *roomHistory) dropOldest() {
	r.bytes -= len(r.ring[r.head].Text)
	r.ring[r.head] = nil
	r.head = (r.head + 1) % len(r.ring)
	r.n--
}

// span copies messages [from, to) of the ring, oldest first.
func (r *roomHistory) span(from, to int) []*Event {
	out := make([]*Event, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, r.at(i))
	}
	return out
}

// Append implements History.
func (h *MemoryHistory) Append(ev *Event) {
	retain, retainBytes := h.Retain, h.RetainBytes
	if retain <= 0 {
		retain = DefaultHistoryRetain
	}
	if retainBytes <= 0 {
		retainBytes = DefaultHistoryRetainBytes
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rooms == nil {
		h.rooms = make(map[string]*roomHistory)
	}
	r := h.rooms[ev.Room]
	if r == nil {
		r = &roomHistory{}
		h.rooms[ev.Room] = r
	}
	r.push(ev, retain)
	for r.bytes > retainBytes && r.n > 1 {
		r.dropOldest()
	}
}

// Recent implements History.
func (h *MemoryHistory) Recent(room string, n int) []*Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	if r == nil || n <= 0 {
		return nil
	}
	return r.span(max(0, r.n-n), r.n)
}

// Before implements History.
func (h *MemoryHistory) Before(room string, seq uint64, n int) []*Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	if r == nil || n <= 0 {
		return nil
	}
	// Messages are in seq order: find the first at or after seq.
	end := sort.Search(r.n, func(i int) bool { return r.at(i).Seq >= seq })
	return r.span(max(0, end-n), end)
}
