package tcpfront

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"chatroom/hub/wire/proto"
)

// A connection whose first non-blank byte is not '{' is a person at a raw
// terminal (nc, telnet, the tutorial's network debug assistant): it speaks
// in lines, the same words as cmd/chat, and reads every event as one line
// of text. JSON clients, the original Python client among them, always
// start with '{', so they never get here.
//
// The human mode is an adapter between that person and an extended-protocol
// session: each line becomes one request (or a local answer such as /help),
// and each object the session writes becomes a line. Everything else (rate
// limits, sizes, login deadline, slow-reader cut-off) is the session's, as
// for any client.

// greeting is what a person sees after the first line they type.
const greeting = "* Welcome. Type 'login NAME' to join, then chat; /help lists the commands.\r\n"

// human is one person's line-mode state. Requests are translated on the
// session's reader goroutine and replies rendered on its writer: mu guards
// what both touch.
type human struct {
	mu      sync.Mutex
	nick    string
	room    string   // where plain lines go
	rooms   []string // rooms joined
	joining string   // a /join whose joined reply makes it the current room
	greeted bool

	// out is the connection's write half while the reader needs to answer
	// on its own (help, usage); wmu serialises it with the session's writes.
	wmu *sync.Mutex
	out func([]byte) error
}

// errQuit ends a human's connection: they typed /quit.
var errQuit = io.EOF

// request turns one line into a request frame for the session, or answers
// it locally and returns nil (read the next line).
func (h *human) request(line []byte) ([]byte, error) {
	line = stripTelnet(line)
	line = bytes.TrimRight(line, "\r\n")
	if !utf8.Valid(line) {
		return line, nil // the session refuses it: not valid UTF-8
	}
	text := strings.TrimSpace(string(line))
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.greeted {
		h.greeted = true
		h.say(greeting)
	}
	if text == "" {
		return nil, nil
	}
	word, rest, _ := strings.Cut(text, " ")
	rest = strings.TrimSpace(rest)
	var req proto.Request
	switch strings.ToLower(word) {
	case "login":
		req = proto.Request{Type: proto.TypeLogin, Nickname: rest, Protocol: proto.ProtocolExtended}
	case "send":
		req = h.broadcastLocked(rest)
	case "/quit", "/exit", "quit":
		h.say("* bye\r\n")
		return nil, errQuit
	case "/help", "help":
		h.say(strings.Join(proto.CommandHelp, "\r\n") + "\r\n")
		return nil, nil
	case "/join", "/j":
		room := strings.ToLower(strings.TrimPrefix(rest, "#"))
		if h.inLocked(room) {
			h.room = room
			h.say("* now talking in #" + room + "\r\n")
			return nil, nil
		}
		h.joining = room
		req = proto.Request{Type: proto.TypeJoin, Room: rest}
	case "/switch":
		room := strings.ToLower(strings.TrimPrefix(rest, "#"))
		if !h.inLocked(room) {
			h.say("* not in #" + room + "; /join it first\r\n")
			return nil, nil
		}
		h.room = room
		h.say("* now talking in #" + room + "\r\n")
		return nil, nil
	case "/leave":
		if rest == "" {
			rest = h.room
		}
		req = proto.Request{Type: proto.TypeLeave, Room: rest}
	case "/rooms":
		req = proto.Request{Type: proto.TypeRooms}
	case "/who":
		req = proto.Request{Type: proto.TypeMembers, Room: h.room}
	case "/msg":
		to, msg, _ := strings.Cut(rest, " ")
		req = proto.Request{Type: proto.TypePrivate, To: to, Message: strings.TrimSpace(msg)}
	case "/nick":
		req = proto.Request{Type: proto.TypeNick, Nickname: rest}
	case "/search":
		req = proto.Request{Type: proto.TypeSearch, Room: h.room, Query: rest}
	default:
		if strings.HasPrefix(word, "/") {
			h.say("* unknown command " + proto.Printable(word) + "; /help lists them\r\n")
			return nil, nil
		}
		req = h.broadcastLocked(text)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("human request: %w", err)
	}
	return b, nil
}

// broadcastLocked is a message to the current room.
func (h *human) broadcastLocked(text string) proto.Request {
	return proto.Request{Type: proto.TypeBroadcast, Room: h.room, Message: text}
}

func (h *human) inLocked(room string) bool {
	for _, r := range h.rooms {
		if r == room {
			return true
		}
	}
	return false
}

// say writes text to the person from the reader goroutine.
func (h *human) say(text string) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_ = h.out([]byte(text))
}

// render turns the session's frames (extended-protocol objects) into lines
// of text, updating the person's state from them.
func (h *human) render(frames [][]byte) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([][]byte, 0, len(frames))
	for _, f := range frames {
		var ev proto.Message
		if err := json.Unmarshal(f, &ev); err != nil {
			continue // not an object: nothing a person needs
		}
		if text := h.lineLocked(&ev); text != "" {
			out = append(out, []byte(text))
		}
	}
	return out
}

// lineLocked is the text for one event ("" for nothing), each line ending
// in CRLF (what telnet expects; nc shows it the same).
func (h *human) lineLocked(ev *proto.Message) string {
	var b strings.Builder
	line := func(format string, args ...any) {
		// A message's own line breaks end in CRLF too: a raw terminal
		// needs the carriage return.
		b.WriteString(strings.ReplaceAll(proto.Printable(fmt.Sprintf(format, args...)), "\n", "\r\n"))
		b.WriteString("\r\n")
	}
	msg := func(m *proto.Message) {
		line("%s [#%s] %s: %s", clock(m.Time), m.Room, m.SenderNickname, m.Message)
	}
	switch ev.Type {
	case "login":
		if ev.Status != "ok" {
			line("* login refused: %s", ev.Error)
			break
		}
		h.nick = ev.Nickname
		line("* logged in as %s. Plain lines go to the current room; /help lists the commands.", ev.Nickname)
	case "joined":
		hist := ev.HistoryMessages()
		for i := range hist {
			hist[i].Room = ev.Room
			msg(&hist[i])
		}
		if !h.inLocked(ev.Room) {
			h.rooms = append(h.rooms, ev.Room)
		}
		if h.room == "" || h.joining == ev.Room {
			h.room, h.joining = ev.Room, ""
		}
		names := make([]string, len(ev.Members))
		for i, m := range ev.Members {
			names[i] = m.Nickname
		}
		sort.Strings(names)
		line("* in #%s with %s; talking in #%s", ev.Room, strings.Join(names, ", "), h.room)
	case "left":
		for i, r := range h.rooms {
			if r == ev.Room {
				h.rooms = append(h.rooms[:i], h.rooms[i+1:]...)
				break
			}
		}
		if h.room == ev.Room && len(h.rooms) > 0 {
			h.room = h.rooms[0]
		}
		line("* left #%s; talking in #%s", ev.Room, h.room)
	case "message":
		msg(ev)
	case "join", "leave", "rename":
		line("%s [#%s] * %s", clock(ev.Time), ev.Room, ev.Message)
	case "notice":
		line("%s * %s", clock(ev.Time), ev.Message)
	case "private":
		if ev.SenderNickname == h.nick { // the echo of one's own
			line("%s [private to %s] %s: %s", clock(ev.Time), ev.ToNickname, ev.SenderNickname, ev.Message)
		} else {
			line("%s [private] %s: %s", clock(ev.Time), ev.SenderNickname, ev.Message)
		}
	case "nick":
		h.nick = ev.Nickname
		line("* you are now %s", ev.Nickname)
	case "members":
		names := make([]string, len(ev.Members))
		for i, m := range ev.Members {
			names[i] = m.Nickname
		}
		sort.Strings(names)
		line("* %d in #%s: %s", len(names), ev.Room, strings.Join(names, ", "))
	case "rooms":
		for _, r := range ev.Rooms {
			mark := " "
			if r.Joined {
				mark = "*"
			}
			line("%s #%s (%d)", mark, r.Room, r.Members)
		}
	case "history", "search":
		if ev.Type == "search" {
			line("* %d found in #%s for %q", len(ev.Messages), ev.Room, ev.Query)
		}
		for i := range ev.Messages {
			ev.Messages[i].Room = ev.Room
			msg(&ev.Messages[i])
		}
	case "error":
		line("* error: %s", ev.Error)
	case "typing":
	default:
		if ev.Message != "" {
			line("%s: %s", ev.SenderNickname, ev.Message)
		}
	}
	return b.String()
}

// clock shows an event's time as the server's local HH:MM.
func clock(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t = time.Now()
	}
	return t.Local().Format("15:04")
}

// stripTelnet drops telnet negotiation (IAC sequences) from a line: a
// telnet client sends some before the first line and with control keys.
func stripTelnet(line []byte) []byte {
	const iac, sb, se = 255, 250, 240
	if bytes.IndexByte(line, iac) < 0 {
		return line
	}
	out := make([]byte, 0, len(line))
	for i := 0; i < len(line); i++ {
		if line[i] != iac || i+1 >= len(line) {
			out = append(out, line[i])
			continue
		}
		switch cmd := line[i+1]; {
		case cmd == iac: // an escaped 255
			out = append(out, iac)
			i++
		case cmd == sb: // subnegotiation: skip to IAC SE
			end := bytes.Index(line[i:], []byte{iac, se})
			if end < 0 {
				return out
			}
			i += end + 1
		case cmd >= 251 && cmd <= 254: // WILL, WONT, DO, DONT + option
			i += 2
		default: // a two-byte command
			i++
		}
	}
	return out
}
