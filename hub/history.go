package hub

import "sync"

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

type roomHistory struct {
	events []*Event // oldest first
	bytes  int
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
	r.events = append(r.events, ev)
	r.bytes += len(ev.Text)
	drop := 0
	for len(r.events)-drop > retain || (r.bytes > retainBytes && len(r.events)-drop > 1) {
		r.bytes -= len(r.events[drop].Text)
		drop++
	}
	if drop > 0 {
		// Copy down rather than reslice so the backing array does not grow
		// without bound.
		n := copy(r.events, r.events[drop:])
		clear(r.events[n:])
		r.events = r.events[:n]
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
	start := max(0, len(r.events)-n)
	return append([]*Event(nil), r.events[start:]...)
}

// Before implements History.
func (h *MemoryHistory) Before(room string, seq uint64, n int) []*Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	if r == nil || n <= 0 {
		return nil
	}
	end := len(r.events)
	for end > 0 && r.events[end-1].Seq >= seq {
		end--
	}
	start := max(0, end-n)
	return append([]*Event(nil), r.events[start:end]...)
}
