package main

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

// person is someone at nc or telnet: raw lines in, lines of text out.
type person struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialPerson(t *testing.T, m *Main) *person {
	t.Helper()
	c := dial(t, m.TCPAddr())
	t.Cleanup(func() { c.Close() })
	return &person{t: t, c: c, r: bufio.NewReader(c)}
}

func (p *person) type_(raw string) {
	p.t.Helper()
	if _, err := p.c.Write([]byte(raw)); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads lines until one contains want, and returns it.
func (p *person) expect(want string) string {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(waitTime))
	var seen []string
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("waiting for %q: %v; saw %q", want, err, seen)
		}
		if bytes.ContainsAny([]byte(line), "\x1b\x07") {
			p.t.Fatalf("a raw control character reached the terminal: %q", line)
		}
		if !strings.HasSuffix(line, "\r\n") {
			p.t.Fatalf("line without CRLF: %q", line)
		}
		if strings.Contains(line, want) {
			return line
		}
		seen = append(seen, line)
	}
}

// TestChatFromARawTerminal: a person with nc or telnet logs in, chats with
// a JSON client, uses the slash commands, and hostile bytes get the same
// answers as from a JSON client.
func TestChatFromARawTerminal(t *testing.T) {
	m := startServer(t)
	json := dialTCP(t, m, "json")
	json.login("json")
	// telnet negotiates before the first line; CRLF line ends.
	nc := dialPerson(t, m)
	nc.type_("\xff\xfd\x18\xff\xfb\x1flogin ncuser\r\n")
	nc.expect("Welcome")
	nc.expect("* logged in as ncuser")
	json.await("ncuser's join", func(x msg) bool { return x.str("message") == "ncuser joined" })

	json.say("hi from json")
	if line := nc.expect("hi from json"); !strings.Contains(line, "[#lobby] json: hi from json") {
		t.Fatalf("line %q", line)
	}
	json.say("two\nlines")
	nc.expect("json: two") // each line of it ends in CRLF (expect checks)
	nc.expect("    lines")
	nc.type_("hello from nc\r\n")
	json.awaitMessage("hello from nc")
	nc.type_("send said with send\n") // nc sends LF only
	json.awaitMessage("said with send")

	nc.type_("/join #Go\r\n")
	nc.expect("* in #go with ncuser; talking in #go")
	json.request(`{"type":"join","room":"go"}`)
	json.awaitType("joined")
	nc.type_("in go now\r\n")
	if got := json.awaitMessage("in go now"); got.str("room") != "go" {
		t.Fatalf("plain line went to %q, want go", got.str("room"))
	}
	nc.type_("/who\r\n")
	nc.expect("* 2 in #go: json, ncuser")
	nc.type_("/rooms\r\n")
	nc.expect("* #go (2)")
	nc.type_("/msg json psst\r\n")
	if got := json.awaitType("private"); got.str("message") != "psst" || got.str("sender_nickname") != "ncuser" {
		t.Fatalf("private %v", got)
	}
	nc.expect("[private to json] ncuser: psst")
	nc.type_("/switch lobby\r\n")
	nc.expect("* now talking in #lobby")
	nc.type_("/nick ncperson\r\n")
	nc.expect("* you are now ncperson")
	nc.type_("/help\r\n")
	nc.expect("/search TEXT")
	nc.type_("/dance\r\n")
	nc.expect("* unknown command /dance")

	// Hostile bytes: the same refusals as for a JSON client.
	nc.type_("\x1b[31mred\x07\r\n")
	nc.expect("* error: invalid message: control character U+001B")
	nc.type_("bad \xc3\x28 utf8\r\n")
	nc.expect("* error: bad request: not valid UTF-8")

	// /quit leaves, and the room is told.
	nc.type_("/quit\r\n")
	nc.expect("* bye")
	json.await("ncperson's leave", func(x msg) bool { return x.str("type") == "leave" && x.str("room") == "lobby" })
}

// TestRawTerminalLineTooLong: a 1 MB line costs at most the request limit,
// and the person is told why before the connection closes.
func TestRawTerminalLineTooLong(t *testing.T) {
	r := newRoom(t)
	nc := dialPerson(t, r.m)
	nc.type_("login big\r\n")
	nc.expect("* logged in as big")
	go func() {
		_, _ = nc.c.Write(bytes.Repeat([]byte("x"), 1<<20))
	}()
	nc.expect("request too large")
	r.verify()
}
