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

// CommandHelp is the help of the line commands that both line clients,
// cmd/chat and a person at nc (the TCP front's line mode), understand, one
// command a line.
var CommandHelp = []string{
	"login NAME       log in",
	"send TEXT        say TEXT in the current room (a plain line works too)",
	"/join ROOM       join a room (or switch to it if you are in it) and talk there",
	"/switch ROOM     talk in another room you are in",
	"/leave [ROOM]    leave the current room (or ROOM)",
	"/rooms           list rooms",
	"/who             list the current room's members",
	"/msg NICK TEXT   private message",
	"/nick NAME       change your nickname",
	"/search TEXT     find messages of the current room containing TEXT",
	"/quit            leave the chat",
}
