package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"
)

// serverMsg is any object the server sends a protocol-1 client.
type serverMsg struct {
	Type           string   `json:"type"`
	Status         string   `json:"status"`
	ID             int64    `json:"id"`
	Nickname       string   `json:"nickname"`
	Error          string   `json:"error"`
	Request        string   `json:"request"`
	Time           string   `json:"time"`
	SenderID       int64    `json:"sender_id"`
	SenderNickname string   `json:"sender_nickname"`
	Message        string   `json:"message"`
	Members        []member `json:"members"`
}

type member struct {
	ID       int64  `json:"id"`
	Nickname string `json:"nickname"`
}

// app is one chat session: the connection, the state of the conversation and
// the user interface, all driven from one goroutine (run).
type app struct {
	cfg  config
	ui   ui
	conn net.Conn

	self         int64
	nick         string
	loginPending bool
	unacked      int  // messages sent and not yet echoed or refused
	failed       bool // something was refused: script mode exits 1
}

func newApp(cfg config, u ui) *app { return &app{cfg: cfg, ui: u} }

func (a *app) run(ctx context.Context) int {
	d := net.Dialer{Timeout: a.cfg.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", a.cfg.addr)
	if err != nil {
		a.ui.Problem(fmt.Sprintf("cannot connect: %v", err))
		return 1
	}
	a.conn = conn
	defer conn.Close()
	incoming := make(chan serverMsg, 64)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go readServer(conn, incoming, readErr, done)

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
		if a.loginPending {
			input = nil // one command at a time: wait for the login's answer
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
		case msg, ok := <-incoming:
			if !ok {
				err := <-readErr
				if lines == nil && a.settled() {
					return a.exitCode()
				}
				a.ui.Problem(fmt.Sprintf("connection closed: %v", err))
				return 1
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

func (a *app) settled() bool { return !a.loginPending && a.unacked == 0 }

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
		a.request(map[string]any{"type": "members"})
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
	for _, l := range []string{
		"login NAME     log in",
		"send MESSAGE   send a message (after login, a plain line works too)",
		"/who           list members",
		"/quit          leave",
	} {
		a.ui.Show(l)
	}
}

func (a *app) login(nick string) {
	if nick == "" {
		a.ui.Problem("usage: login NAME")
		return
	}
	if a.request(map[string]any{"type": "login", "nickname": nick, "protocol": 1}) {
		a.nick = nick
		a.loginPending = true
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
	if a.request(map[string]any{"type": "broadcast", "message": text}) {
		a.unacked++
	}
}

// request writes one request object, one per line.
func (a *app) request(req map[string]any) bool {
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
		a.loginPending = false
		if m.Status != "ok" {
			a.ui.Problem("login refused: " + m.Error)
			a.nick = ""
			a.failed = true
			return
		}
		a.self, a.nick = m.ID, m.Nickname
		names := make([]string, 0, len(m.Members))
		for _, mem := range m.Members {
			names = append(names, mem.Nickname)
		}
		sort.Strings(names)
		a.ui.Show(printable(fmt.Sprintf("* logged in as %s (id %d). Here: %s", m.Nickname, m.ID, strings.Join(names, ", "))))
	case "message":
		if m.SenderID == a.self {
			a.unacked--
		}
		a.ui.Show(printable(fmt.Sprintf("%s %s: %s", clock(m.Time), m.SenderNickname, m.Message)))
	case "join", "leave", "notice":
		a.ui.Show(printable(fmt.Sprintf("%s * %s", clock(m.Time), m.Message)))
	case "members":
		names := make([]string, 0, len(m.Members))
		for _, mem := range m.Members {
			names = append(names, mem.Nickname)
		}
		sort.Strings(names)
		a.ui.Show(printable(fmt.Sprintf("* %d here: %s", len(names), strings.Join(names, ", "))))
	case "error":
		if m.Request == "broadcast" {
			a.unacked--
		}
		a.failed = true
		a.ui.Problem(printable("refused: " + m.Error))
	default:
		if m.Message != "" { // something newer than this client: show the text
			a.ui.Show(printable(fmt.Sprintf("%s: %s", m.SenderNickname, m.Message)))
		}
	}
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
			if errors.Is(err, net.ErrClosed) {
				err = nil
			}
			errc <- err
			return
		}
		select {
		case out <- m:
		case <-done:
			return
		}
	}
}
