package proto

// Event types: the "type" of what the server sends in the extended shape
// (a reply carries its request's type, Type*). They are named here once:
// the server's names for kinds of event are for its logs, and renaming a
// log label must not change the wire.
const (
	EventMessage = "message"
	EventJoin    = "join"
	EventLeave   = "leave"
	EventRename  = "rename"
	EventNotice  = "notice"
	EventPrivate = "private"
	EventTyping  = "typing"
	EventJoined  = "joined"
	EventLeft    = "left"
	EventError   = "error"
)
