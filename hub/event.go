package hub

import (
	"sync/atomic"
	"time"
)

// Kind says what an Event is.
type Kind uint8

// The kinds of event a member can receive.
const (
	// KindMessage is a chat message from a member.
	KindMessage Kind = iota + 1
	// KindJoin announces that Subject joined the room.
	KindJoin
	// KindLeave announces that Subject left the room; Reason says why.
	KindLeave
	// KindNotice is a notice from the system, such as a pending shutdown.
	KindNotice
	// KindWelcome is delivered only to a member that has just joined, before
	// anything else, carrying its identity and the member list. It is not part
	// of the room's sequence (Seq is 0).
	KindWelcome
)

// String returns the kind's name as used in logs.
func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindJoin:
		return "join"
	case KindLeave:
		return "leave"
	case KindNotice:
		return "notice"
	case KindWelcome:
		return "welcome"
	}
	return "unknown"
}

// Identity names a member: a server-assigned id, never reused while the server
// runs, and the nickname it chose.
type Identity struct {
	ID       int64
	Nickname string
}

// System is the sender of joins, leaves and notices. Its id, 0, is never given
// to a member.
var System = Identity{ID: 0, Nickname: "System"}

// MaxEncodings is the number of wire shapes an Event can cache at once.
const MaxEncodings = 4

// Event is one thing that happened in the room. Once published it is
// immutable and shared by every recipient.
type Event struct {
	Kind Kind
	// Seq is the event's position in the room's order, assigned by the broker
	// and starting at 1. Welcome events have Seq 0.
	Seq uint64
	// Time is when the broker sequenced the event.
	Time time.Time
	// From is who sent it: a member for messages, System otherwise.
	From Identity
	// Subject is the member that joined, left or was welcomed.
	Subject Identity
	// Text is the message or notice text.
	Text string
	// Reason says why Subject left (KindLeave only).
	Reason string
	// Members lists the room's members (KindWelcome only), the joiner included.
	Members []Identity

	encodings [MaxEncodings]atomic.Pointer[[][]byte]
}

// Encoding returns the event's encoding in one wire shape (slot, below
// MaxEncodings), calling encode only on first use so that an event fanned out
// to thousands of members is encoded once per shape. encode must be a pure
// function of the event; if two goroutines race, both compute and one result
// wins, which is harmless. The hub never reads these bytes.
func (e *Event) Encoding(slot int, encode func(*Event) [][]byte) [][]byte {
	if p := e.encodings[slot].Load(); p != nil {
		return *p
	}
	frames := encode(e)
	e.encodings[slot].CompareAndSwap(nil, &frames)
	return *e.encodings[slot].Load()
}
