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
	// KindWelcome is delivered only to a member that has just logged in,
	// before anything else, carrying its identity. It is not part of any
	// room's sequence (Seq is 0).
	KindWelcome
	// KindJoined is delivered only to a member that has just joined Room:
	// the room's members and its recent history, taken atomically with the
	// join so that live events continue exactly where History ends.
	KindJoined
	// KindLeft is delivered only to a member that has left Room by request.
	KindLeft
	// KindRename announces in Room that Subject (its new name) was OldNickname.
	KindRename
	// KindPrivate is a message from From to To only. Not sequenced.
	KindPrivate
	// KindTyping says From is typing in Room. Ephemeral: not sequenced, not
	// kept in history.
	KindTyping
	// KindRefused is delivered only to From: its message (Room, Text) could
	// not be saved, and so was delivered to nobody; Reason says why.
	KindRefused
)

// String returns the kind's name as used in logs (the protocol's names
// are hub/wire's: EventType).
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
	case KindJoined:
		return "joined"
	case KindLeft:
		return "left"
	case KindRename:
		return "rename"
	case KindPrivate:
		return "private"
	case KindTyping:
		return "typing"
	case KindRefused:
		return "refused"
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
	// Room is the room the event happened in; empty for private messages,
	// welcomes and server-wide notices.
	Room string
	// Seq is the event's position in its room's order, assigned by the
	// broker and starting at 1 in each room. Events outside any room's order
	// (welcome, private, typing, server notices) have Seq 0.
	Seq uint64
	// Time is when the broker sequenced the event.
	Time time.Time
	// From is who sent it: a member for messages, System otherwise.
	From Identity
	// Subject is the member that joined, left, was renamed or was welcomed.
	Subject Identity
	// To is the recipient of a private message.
	To Identity
	// OldNickname is Subject's nickname before a rename.
	OldNickname string
	// Text is the message or notice text.
	Text string
	// Reason says why Subject left (KindLeave only).
	Reason string
	// Members lists the room's members (KindJoined only), the joiner included.
	Members []Identity
	// History is the room's recent messages, oldest first (KindJoined
	// only); or, Resumed, every event after the position the member
	// resumed from.
	History []*Event
	// Resumed says History holds every event since the member's position
	// (KindJoined only).
	Resumed bool
	// Gap says the member asked to resume but could not be given all it
	// missed: History is the latest messages; scroll back for more
	// (KindJoined only).
	Gap bool
	// Epoch is the history's epoch (KindWelcome only): positions to resume
	// from are of this epoch.
	Epoch string

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
