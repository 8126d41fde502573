package hub

import (
	"slices"
	"sort"
	"strings"
	"sync"
)

// History keeps rooms' events for members who join later, resume after a
// reconnect, scroll back or search. The hub appends every sequenced event
// (messages, joins, leaves, renames) in its room's order, under its read
// lock, as it delivers it. MemoryHistory is the in-process store; a
// durable one (hub/sqlite) keeps a MemoryHistory as its cache and the rest
// on disk.
type History interface {
	// Append records a sequenced event (its Room and Seq are set). The hub
	// calls it under its read lock: it must not block.
	Append(ev *Event)
	// Recent returns up to n of the room's latest messages, oldest first.
	// The hub calls it under its write lock (a join): it must be quick.
	Recent(room string, n int) []*Event
	// After returns every sequenced event of the room with Seq above seq,
	// oldest first, and true; or false when it cannot: seq is older than
	// what it keeps, more than n events followed it, or seq is not of this
	// room's history at all (newer than its newest). Under the hub's write
	// lock, like Recent.
	After(room string, seq uint64, n int) ([]*Event, bool)
	// Before returns up to n of the room's messages with Seq below seq,
	// oldest first. Not under any hub lock: it may read a disk.
	Before(room string, seq uint64, n int) ([]*Event, error)
	// Search returns up to n of the room's messages whose text contains
	// query (ignoring case), newest first. Not under any hub lock.
	Search(room, query string, n int) ([]*Event, error)
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
	return r.messagesBefore(r.n, n)
}

// Before implements History.
func (h *MemoryHistory) Before(room string, seq uint64, n int) ([]*Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	if r == nil || n <= 0 {
		return nil, nil
	}
	return r.messagesBefore(r.search(seq), n), nil
}

// After implements History.
func (h *MemoryHistory) After(room string, seq uint64, n int) ([]*Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	if r == nil || r.n == 0 {
		return nil, seq == 0 // nothing kept: only "nothing seen" is complete
	}
	newest, oldest := r.at(r.n-1).Seq, r.at(0).Seq
	if seq > newest || seq+1 < oldest || newest-seq > uint64(n) {
		return nil, false
	}
	return r.span(r.search(seq+1), r.n), true
}

// Search implements History: a scan of what is kept, newest first.
func (h *MemoryHistory) Search(room, query string, n int) ([]*Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	if r == nil || n <= 0 || query == "" {
		return nil, nil
	}
	q := strings.ToLower(query)
	var out []*Event
	for i := r.n - 1; i >= 0 && len(out) < n; i-- {
		if ev := r.at(i); ev.Kind == KindMessage && strings.Contains(strings.ToLower(ev.Text), q) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// search returns the index of the first event with Seq at or above seq.
func (r *roomHistory) search(seq uint64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).Seq >= seq })
}

// messagesBefore returns up to n of the messages (not joins, leaves or
// renames) among the first end events, the latest ones, oldest first.
func (r *roomHistory) messagesBefore(end, n int) []*Event {
	var out []*Event
	for i := end - 1; i >= 0 && len(out) < n; i-- {
		if ev := r.at(i); ev.Kind == KindMessage {
			out = append(out, ev)
		}
	}
	slices.Reverse(out)
	return out
}
