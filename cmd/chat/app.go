package main

import (
	"bufio"
	"chatroom/hub/wire/proto"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"time"
)

// serverMsg is any object the server sends; member and roomInfo are its
// parts (the protocol's own types).
type (
	serverMsg = proto.Message
	member    = proto.Member
	roomInfo  = proto.RoomInfo
)

// app is one chat session: the connection, the state of the conversation and
// the user interface, all driven from one goroutine (run).
type app struct {
	cfg  config
	ui   ui
	conn net.Conn

	self        int64
	nick        string
	room        string   // where plain lines go
	rooms       []string // rooms joined, in joining order
	waiting     string   // a request ("login", "join") whose answer comes before the next line
	waitingRoom string   // the room of a join being waited for
	unacked     int      // messages sent and not yet echoed or refused
	failed      bool     // something was refused: script mode exits 1

	// Resuming after a reconnect (see README, "Resume").
	epoch    string           // the history's, from the login reply
	lastSeq  map[string]int64 // the last seq shown, per room
	pastIDs  map[int64]bool   // ids this session had on earlier connections
	resuming bool             // reconnected: rejoin a.rooms once logged in
}

func newApp(cfg config, u ui) *app {
	return &app{cfg: cfg, ui: u, lastSeq: map[string]int64{}, pastIDs: map[int64]bool{}}
}

// connection is one connection to the server and its reader.
type connection struct {
	conn     net.Conn
	incoming chan serverMsg
	readErr  chan error
	done     chan struct{}
}

func (a *app) dial(ctx context.Context) (*connection, error) {
	d := net.Dialer{Timeout: a.cfg.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", a.cfg.addr)
	if err != nil {
		return nil, err
	}
	c := &connection{conn: conn, incoming: make(chan serverMsg, 64), readErr: make(chan error, 1), done: make(chan struct{})}
	go readServer(conn, c.incoming, c.readErr, c.done)
	a.conn = conn
	return c, nil
}

func (c *connection) close() {
	close(c.done)
	_ = c.conn.Close()
}

// reconnect dials again with backoff (0.5 s doubling to 8 s) for up to
// cfg.reconnectFor, and logs in again under the same nickname, resuming
// every room from the last seq shown there.
func (a *app) reconnect(ctx context.Context, cause error) (*connection, bool) {
	a.ui.Problem(fmt.Sprintf("connection lost (%v); reconnecting", cause))
	if a.self != 0 {
		a.pastIDs[a.self] = true
	}
	giveUp := time.Now().Add(a.cfg.reconnectFor)
	for wait := 500 * time.Millisecond; time.Now().Before(giveUp); wait = min(2*wait, 8*time.Second) {
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(wait):
		}
		c, err := a.dial(ctx)
		if err != nil {
			continue
		}
		a.self, a.resuming = 0, true
		req := proto.Request{Type: proto.TypeLogin, Nickname: a.nick, Protocol: proto.ProtocolExtended,
			Epoch: a.epoch, After: uint64(a.lastSeq[a.lobby()])}
		if a.request(req) {
			a.waiting = "login"
			return c, true
		}
		c.close()
	}
	a.ui.Problem(fmt.Sprintf("could not reconnect within %s", a.cfg.reconnectFor))
	return nil, false
}

// lobby is the room a login puts the member in: the first joined.
func (a *app) lobby() string {
	if len(a.rooms) > 0 {
		return a.rooms[0]
	}
	return "lobby"
}

func (a *app) run(ctx context.Context) int {
	c, err := a.dial(ctx)
	if err != nil {
		a.ui.Problem(fmt.Sprintf("cannot connect: %v", err))
		return 1
	}
	defer func() {
		if c != nil {
			c.close()
		}
	}()

	if a.ui.Interactive() {
		a.ui.Show(fmt.Sprintf("connected to %s. Type 'login NAME' to join, /help for help.", a.cfg.addr))
	}
	if a.cfg.nick != "" {
		a.login(a.cfg.nick)
	}

	lines := a.ui.Lines()
	var deadline <-chan time.Time
	for {
		input := lines
		if a.waiting != "" {
			input = nil // wait for the answer: the next line may depend on it
		}
		select {
		case <-ctx.Done():
			return 130
		case line, ok := <-input:
			if !ok {
				lines = nil
				if a.settled() {
					return a.exitCode()
				}
				deadline = time.After(a.cfg.ackTimeout)
				continue
			}
			if quit := a.command(line); quit {
				return a.exitCode()
			}
		case msg, ok := <-c.incoming:
			if !ok {
				err := <-c.readErr
				if lines == nil && a.settled() {
					return a.exitCode()
				}
				if a.nick == "" || a.cfg.reconnectFor <= 0 {
					a.ui.Problem(fmt.Sprintf("connection closed: %v", err))
					return 1
				}
				c.close()
				var ok bool
				if c, ok = a.reconnect(ctx, err); !ok {
					return 1
				}
				continue
			}
			a.show(msg)
			if lines == nil && a.settled() {
				return a.exitCode()
			}
		case <-deadline:
			a.ui.Problem(fmt.Sprintf("gave up waiting for the server after %s (%d messages unacknowledged)", a.cfg.ackTimeout, a.unacked))
			return 1
		}
	}
}

func (a *app) settled() bool { return a.waiting == "" && a.unacked == 0 }

func (a *app) exitCode() int {
	if a.failed {
		return 1
	}
	return 0
}

// command handles one input line and reports whether to quit.
func (a *app) command(line string) bool {
	trimmed := strings.TrimSpace(line)
	word, rest, _ := strings.Cut(trimmed, " ")
	switch strings.ToLower(word) {
	case "":
		return false
	case "/quit", "/exit":
		return true
	case "/help":
		a.help()
		return false
	case "/who":
		a.request(proto.Request{Type: proto.TypeMembers, Room: a.room})
		return false
	case "/rooms":
		a.request(proto.Request{Type: proto.TypeRooms})
		return false
	case "/join", "/switch", "/j":
		name := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(rest), "#"))
		switch {
		case name == "":
			a.ui.Problem("usage: " + word + " ROOM")
		case slices.Contains(a.rooms, name):
			a.switchTo(name)
		case word == "/switch":
			a.ui.Problem("not in #" + name + "; /join it first")
		default:
			if a.request(proto.Request{Type: proto.TypeJoin, Room: name}) {
				a.waiting, a.waitingRoom = "join", name
			}
		}
		return false
	case "/leave":
		name := strings.TrimSpace(rest)
		if name == "" {
			name = a.room
		}
		a.request(proto.Request{Type: proto.TypeLeave, Room: name})
		return false
	case "/msg":
		to, text, _ := strings.Cut(strings.TrimSpace(rest), " ")
		if to == "" || strings.TrimSpace(text) == "" {
			a.ui.Problem("usage: /msg NICK TEXT")
			return false
		}
		a.sendTo(proto.Request{Type: proto.TypePrivate, To: to, Message: text})
		return false
	case "/nick":
		a.request(proto.Request{Type: proto.TypeNick, Nickname: strings.TrimSpace(rest)})
		return false
	case "/search":
		if strings.TrimSpace(rest) == "" {
			a.ui.Problem("usage: /search TEXT")
			return false
		}
		a.request(proto.Request{Type: proto.TypeSearch, Room: a.room, Query: strings.TrimSpace(rest)})
		return false
	case "login":
		if a.self != 0 {
			a.ui.Problem("already logged in as " + a.nick)
			return false
		}
		a.login(strings.TrimSpace(rest))
		return false
	case "send":
		a.send(strings.TrimSpace(rest))
		return false
	}
	if strings.HasPrefix(word, "/") {
		a.ui.Problem("unknown command " + word + "; /help lists them")
		return false
	}
	a.send(trimmed)
	return false
}

func (a *app) help() {
	for _, l := range proto.CommandHelp {
		a.ui.Show(l)
	}
}

func (a *app) login(nick string) {
	if nick == "" {
		a.ui.Problem("usage: login NAME")
		return
	}
	if a.request(proto.Request{Type: proto.TypeLogin, Nickname: nick, Protocol: proto.ProtocolExtended}) {
		a.nick = nick
		a.waiting = "login"
	}
}

func (a *app) send(text string) {
	if a.self == 0 {
		a.ui.Problem("not logged in: type 'login NAME' first")
		a.failed = true
		return
	}
	if text == "" {
		return
	}
	a.sendTo(proto.Request{Type: proto.TypeBroadcast, Room: a.room, Message: text})
}

// sendTo sends a message request whose echo (or refusal) will acknowledge it.
func (a *app) sendTo(req proto.Request) {
	if a.self == 0 {
		a.ui.Problem("not logged in: type 'login NAME' first")
		a.failed = true
		return
	}
	if a.request(req) {
		a.unacked++
	}
}

// switchTo makes room the one plain lines go to.
func (a *app) switchTo(room string) {
	a.room = room
	a.ui.SetRoom(room)
	a.ui.Show("* now talking in #" + room)
}

// where labels a line with its room, unless it is the current one.
func (a *app) where(room string) string {
	if room == "" || room == a.room {
		return ""
	}
	return "[#" + room + "] "
}

// request writes one request object, one per line.
func (a *app) request(req proto.Request) bool {
	b, err := json.Marshal(req)
	if err != nil {
		a.ui.Problem(err.Error())
		return false
	}
	if err := a.conn.SetWriteDeadline(time.Now().Add(10 * time.Second)); err == nil {
		_, err = a.conn.Write(append(b, '\n'))
	}
	if err != nil {
		a.ui.Problem(fmt.Sprintf("send failed: %v", err))
		a.failed = true
		return false
	}
	return true
}

// show renders one server object and updates the session's state from it.
func (a *app) show(m serverMsg) {
	switch m.Type {
	case "login":
		a.waiting = ""
		if m.Status != "ok" {
			a.ui.Problem("login refused: " + m.Error)
			a.nick = ""
			a.failed = true
			return
		}
		if m.Epoch != a.epoch && a.epoch != "" {
			clear(a.lastSeq) // another history: nothing shown so far continues in it
		}
		a.self, a.nick, a.epoch = m.ID, m.Nickname, m.Epoch
		a.ui.Show(printable(fmt.Sprintf("* logged in as %s (id %d)", m.Nickname, m.ID)))
		if a.resuming {
			a.resuming = false
			for _, room := range a.rooms[min(1, len(a.rooms)):] { // the lobby comes with the login
				a.request(proto.Request{Type: proto.TypeJoin, Room: room, Epoch: a.epoch, After: uint64(a.lastSeq[room])})
			}
		}
	case "joined":
		if a.waiting == "join" && a.waitingRoom == m.Room {
			a.waiting = ""
		}
		rejoined := slices.Contains(a.rooms, m.Room)
		if !rejoined {
			a.rooms = append(a.rooms, m.Room)
		}
		missed := 0
		for _, h := range m.HistoryMessages() {
			if m.Resumed {
				if h.Type == "message" {
					missed++
					if a.pastIDs[h.SenderID] {
						a.unacked-- // saved before the connection was lost: acknowledged now
					}
				}
				h.Room = m.Room
				a.showRoomEvent(h)
				continue
			}
			a.ui.Show(printable(fmt.Sprintf("%s%s %s: %s", a.where(m.Room), clock(h.Time), h.SenderNickname, h.Message)))
			a.lastSeq[m.Room] = max(a.lastSeq[m.Room], h.Seq)
		}
		switch {
		case m.Resumed:
			a.ui.Show(fmt.Sprintf("* reconnected to #%s; %d missed messages", m.Room, missed))
		case m.Gap:
			a.ui.Show(fmt.Sprintf("* reconnected to #%s; some messages were missed, the latest are above", m.Room))
		}
		if rejoined {
			return
		}
		a.ui.Show(printable(fmt.Sprintf("* in #%s with %s", m.Room, names(m.Members))))
		if a.room == "" { // the lobby, at login
			a.room = m.Room
			a.ui.SetRoom(m.Room)
			return
		}
		a.switchTo(m.Room)
	case "left":
		a.rooms = slices.DeleteFunc(a.rooms, func(r string) bool { return r == m.Room })
		delete(a.lastSeq, m.Room)
		a.ui.Show("* left #" + m.Room)
		if a.room == m.Room && len(a.rooms) > 0 {
			a.switchTo(a.rooms[0])
		}
	case "message", "join", "leave", "rename":
		if m.Type == "message" && m.SenderID == a.self {
			a.unacked--
		}
		a.showRoomEvent(m)
	case "search":
		a.ui.Show(printable(fmt.Sprintf("* %d found in #%s for %q", len(m.Messages), m.Room, m.Query)))
		for i := len(m.Messages) - 1; i >= 0; i-- { // newest first from the server: print oldest first
			h := m.Messages[i]
			a.ui.Show(printable(fmt.Sprintf("  %s %s: %s", clock(h.Time), h.SenderNickname, h.Message)))
		}
	case "private":
		if m.SenderID == a.self {
			a.unacked--
			a.ui.Show(printable(fmt.Sprintf("%s [private to %s] %s: %s", clock(m.Time), m.ToNickname, m.SenderNickname, m.Message)))
			return
		}
		a.ui.Show(printable(fmt.Sprintf("%s [private] %s: %s", clock(m.Time), m.SenderNickname, m.Message)))
	case "notice":
		a.ui.Show(printable(fmt.Sprintf("%s * %s", clock(m.Time), m.Message)))
	case "nick":
		a.nick = m.Nickname
		a.ui.Show(printable("* you are now " + m.Nickname))
	case "members":
		a.ui.Show(printable(fmt.Sprintf("* %d in #%s: %s", len(m.Members), m.Room, names(m.Members))))
	case "rooms":
		for _, r := range m.Rooms {
			mark := " "
			if r.Joined {
				mark = "*"
			}
			a.ui.Show(printable(fmt.Sprintf("%s #%s (%d)", mark, r.Room, r.Members)))
		}
	case "history":
		for _, h := range m.Messages {
			a.ui.Show(printable(fmt.Sprintf("%s%s %s: %s", a.where(m.Room), clock(h.Time), h.SenderNickname, h.Message)))
		}
	case "typing":
		// A terminal has nowhere quiet to show it.
	case "error":
		if m.Request == "broadcast" || m.Request == "private" {
			a.unacked--
		}
		if m.Request == a.waiting {
			a.waiting = ""
		}
		a.failed = true
		a.ui.Problem(printable("refused: " + m.Error))
	default:
		if m.Message != "" { // something newer than this client: show the text
			a.ui.Show(printable(fmt.Sprintf("%s: %s", m.SenderNickname, m.Message)))
		}
	}
}

// showRoomEvent prints a message, join, leave or rename of a room, unless
// it was shown already (a resume overlapping what came live).
func (a *app) showRoomEvent(m serverMsg) {
	if m.Seq != 0 {
		if m.Seq <= a.lastSeq[m.Room] {
			return
		}
		a.lastSeq[m.Room] = m.Seq
	}
	if m.Type == "message" {
		a.ui.Show(printable(fmt.Sprintf("%s%s %s: %s", a.where(m.Room), clock(m.Time), m.SenderNickname, m.Message)))
		return
	}
	a.ui.Show(printable(fmt.Sprintf("%s%s * %s", a.where(m.Room), clock(m.Time), m.Message)))
}

func names(ms []member) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Nickname
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// clock shows an event time in the user's local zone.
func clock(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t = time.Now()
	}
	return t.Local().Format("15:04:05")
}

// readServer decodes the server's objects until the connection ends.
func readServer(conn net.Conn, out chan<- serverMsg, errc chan<- error, done <-chan struct{}) {
	defer close(out)
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var m serverMsg
		if err := dec.Decode(&m); err != nil {
			// A field of a shape this client does not know is skipped and
			// the rest decoded; anything else ends the connection.
			if typeErr := (*json.UnmarshalTypeError)(nil); !errors.As(err, &typeErr) {
				if errors.Is(err, net.ErrClosed) {
					err = nil
				}
				errc <- err
				return
			}
		}
		select {
		case out <- m:
		case <-done:
			return
		}
	}
}
