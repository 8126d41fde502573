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
	DefaultHistoryRetainBytes = 1 << 20
)

// footprint is an upper bound on the memory a message keeps alive while it
// is in history: the event itself (messageOverhead) and its text, plus the
// encodings the fronts cache on it (Event.Encoding), one per wire shape in
// use. JSON escaping at most doubles a message's text (it may hold no
// control characters but newline and tab, each escaped in two bytes), and
// an encoding's buffer may have up to a quarter more capacity than it
// uses: so each of the two shapes holds at most 2.5 times the text, and
// the whole under six times. Counting this rather than the text alone is
// what keeps RetainBytes a bound on memory (text of quotes would otherwise
// hold about five times what was counted).
func footprint(ev *Event) int { return messageOverhead + 6*len(ev.Text) }

// messageOverhead is what a message holds besides its text: the Event,
// its encodings' slice headers and their JSON fields, names and times.
const messageOverhead = 768

// MemoryHistory keeps the latest messages of each room in memory, bounded
// per room by count and by memory (footprint: text and cached encodings).
// Its zero value keeps the defaults.
type MemoryHistory struct {
	// Retain is how many messages a room keeps. Default DefaultHistoryRetain.
	Retain int
	// RetainBytes bounds the memory a room's messages hold, counted as
	// their text, their events and the encodings cached on them (see
	// footprint). The newest message is always kept. Default
	// DefaultHistoryRetainBytes.
	RetainBytes int

	mu    sync.Mutex
	rooms map[string]*roomHistory
}

// roomHistory is a ring of a room's latest messages, oldest at head. The
// ring grows by copying its messages, oldest first, into a larger slice, so
// that growth never depends on where head happens to be.
type roomHistory struct {
	ring  []*Event // len(ring) is the capacity in use; slots outside the n held are nil
	head  int      // index of the oldest message
	n     int      // messages held
	bytes int      // Footprint of the messages held
}

// minRing is the smallest ring a room gets: most rooms say little.
const minRing = 8

func (r *roomHistory) at(i int) *Event { return r.ring[(r.head+i)%len(r.ring)] }

// push appends ev, dropping the oldest when the room holds retain already.
func (r *roomHistory) push(ev *Event, retain int) {
	if r.n == len(r.ring) && len(r.ring) < retain {
		r.resize(min(retain, max(minRing, 2*len(r.ring))))
	}
	for r.n >= retain || r.n == len(r.ring) {
		r.dropOldest()
	}
	r.ring[(r.head+r.n)%len(r.ring)] = ev
	r.n++
	r.bytes += footprint(ev)
	if len(r.ring) > max(minRing, 2*retain) { // the bound was lowered: give the memory back
		r.resize(max(minRing, retain))
	}
}

// resize moves the messages held into a ring of size slots, oldest at 0.
func (r *roomHistory) resize(size int) {
	ring := make([]*Event, size)
	for i := range r.n {
		ring[i] = r.at(i)
	}
	r.ring, r.head = ring, 0
}

// dropOldest forgets the oldest message.
func (r *roomHistory) dropOldest() {
	r.bytes -= footprint(r.ring[r.head])
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

// ForgetRoom implements RoomForgetter: a removed room's messages go
// with it.
func (h *MemoryHistory) ForgetRoom(room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.rooms, room)
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
