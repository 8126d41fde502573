package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"chatroom/hub"
	"chatroom/hub/sqlite"
	"chatroom/tcpfront"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTime = 10 * time.Second

// startServer runs a hub with a TCP front on a loopback port.
func startServer(t *testing.T) string {
	t.Helper()
	h, err := hub.New(hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := tcpfront.New(h, tcpfront.Options{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTime)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// peer is a raw extended-protocol TCP client standing in for someone else.
type peer struct {
	t   *testing.T
	c   net.Conn
	dec *json.Decoder
}

func dialPeer(t *testing.T, addr, nick string) *peer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &peer{t: t, c: c, dec: json.NewDecoder(bufio.NewReader(c))}
	p.write(map[string]any{"type": "login", "nickname": nick, "protocol": 1})
	if m := p.next(); m.Status != "ok" {
		t.Fatalf("peer login: %+v", m)
	}
	return p
}

func (p *peer) write(v any) {
	b, _ := json.Marshal(v)
	if _, err := p.c.Write(append(b, '\n')); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) next() serverMsg {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(waitTime))
	var m serverMsg
	if err := p.dec.Decode(&m); err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	return m
}

func (p *peer) awaitMessage(text string) serverMsg {
	p.t.Helper()
	for {
		if m := p.next(); m.Type == "message" && m.Message == text {
			return m
		}
	}
}

// runPiped runs chat with its stdin and stdout on OS pipes, as in
// `printf ... | chat`, and returns its output and exit code.
func runPiped(t *testing.T, addr string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		io.Copy(inW, stdin)
		inW.Close()
	}()
	defer inR.Close()
	var stdout, stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	code := run(ctx, append([]string{"-addr", addr}, args...), inR, &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func TestScriptDeliversAndExitsZero(t *testing.T) {
	addr := startServer(t)
	bob := dialPeer(t, addr, "bob")

	out, errOut, code := runPiped(t, addr, strings.NewReader("login bot\nsend hi\nplain line works\n"))
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"logged in as bot", "bot: hi", "bot: plain line works"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Everything was on the server before chat exited.
	if m := bob.awaitMessage("hi"); m.SenderNickname != "bot" {
		t.Fatalf("bob got %+v", m)
	}
	bob.awaitMessage("plain line works")
}

func TestScriptShowsOthersAndFailsOnRefusal(t *testing.T) {
	addr := startServer(t)
	bob := dialPeer(t, addr, "bob")

	// chat waits on a pipe we control, so bob can speak while it is in.
	inR, inW := io.Pipe()
	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	go func() {
		o, e, c := runPiped(t, addr, inR)
		done <- result{o, e, c}
	}()
	io.WriteString(inW, "login carol\n")
	for m := bob.next(); m.Type != "join"; m = bob.next() {
	}
	bob.write(map[string]any{"type": "broadcast", "message": "\x1b]0;pwned\x07 hi carol"})
	// Control characters are refused by the server; a clean line goes through.
	bob.write(map[string]any{"type": "broadcast", "message": "hi carol"})
	bob.awaitMessage("hi carol")
	io.WriteString(inW, "send  \n/who\nlogin again\n")
	io.WriteString(inW, "send done\n")
	bob.awaitMessage("done")
	inW.Close()
	r := <-done
	if !strings.Contains(r.out, "bob: hi carol") || !strings.Contains(r.out, "2 in #lobby: bob, carol") {
		t.Fatalf("output:\n%s", r.out)
	}
	if !strings.Contains(r.errOut, "already logged in") {
		t.Fatalf("stderr: %q", r.errOut)
	}
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}

	_, errOut, code := runPiped(t, addr, strings.NewReader("login BOB\nsend x\n"))
	if code == 0 || !strings.Contains(errOut, "nickname is taken") {
		t.Fatalf("taken nickname: exit %d, stderr %q", code, errOut)
	}
}

func TestPrintableNeutralisesTerminalEscapes(t *testing.T) {
	got := printable("a\x1b[2Jb\nc\u202e")
	if strings.ContainsAny(got, "\x1b\u202e") || !strings.Contains(got, "\\u001b") || !strings.Contains(got, "\n    c") {
		t.Fatalf("printable = %q", got)
	}
}

func TestScriptRoomsAndPrivateMessages(t *testing.T) {
	addr := startServer(t)
	bob := dialPeer(t, addr, "bob")
	bob.write(map[string]any{"type": "join", "room": "go"})
	for m := bob.next(); m.Type != "joined"; m = bob.next() {
	}

	script := "login dora\n/join #go\nin go\n/msg bob psst\n/switch lobby\nin lobby\n/rooms\n/nick dorothy\nas dorothy\n"
	out, errOut, code := runPiped(t, addr, strings.NewReader(script))
	if code != 0 {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	for _, want := range []string{"* in #go with bob, dora", "[private to bob] dora: psst", "* now talking in #lobby",
		"[#go] ", "* #go (2)", "* you are now dorothy", "dorothy: as dorothy"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	got := map[string]string{}
	for len(got) < 3 {
		m := bob.next()
		if m.Type == "message" || m.Type == "private" {
			got[m.Message] = m.Type + " " + m.Room
		}
	}
	if got["in go"] != "message go" || got["psst"] != "private " || got["in lobby"] != "message lobby" {
		t.Fatalf("bob got %v", got)
	}
}

// durableServer runs a hub that keeps history in the database at path,
// with a TCP front on addr ("127.0.0.1:0" for any port); stop ends it.
func durableServer(t *testing.T, path, addr string) (bound string, stop func()) {
	t.Helper()
	store, err := sqlite.Open(context.Background(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	rooms, _ := store.Rooms(context.Background())
	broker := hub.NewJournaledBroker(store)
	h, err := hub.New(hub.Options{Broker: broker, History: store, Epoch: store.Epoch(), Rooms: rooms})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := tcpfront.New(h, tcpfront.Options{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTime)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Error(err)
			}
			<-served
			broker.Close()
			store.Close()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// syncBuffer is an output that a test can read while chat writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// awaitOutput waits until out contains want.
func awaitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
		time.Sleep(5 * time.Millisecond) // polling output that has no event to wait on
	}
}

// TestReconnectResumesAcrossRestart: the server restarts while chat is in a
// room and someone keeps talking; chat reconnects by itself and shows every
// message once, in order, including those said while it was away.
func TestReconnectResumesAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	addr, stop := durableServer(t, path, "127.0.0.1:0")
	talker := dialPeer(t, addr, "talker")

	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	var out, errOut syncBuffer
	exited := make(chan int, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitTime)
		defer cancel()
		exited <- run(ctx, []string{"-addr", addr, "-nick", "viewer"}, inR, &out, &errOut)
	}()
	awaitOutput(t, &out, "logged in as viewer")
	talker.write(map[string]any{"type": "broadcast", "message": "one"})
	talker.write(map[string]any{"type": "broadcast", "message": "two"})
	awaitOutput(t, &out, "talker: two")

	stop()
	_, _ = durableServer(t, path, addr) // the same address, as after a restart
	talker = dialPeer(t, addr, "talker")
	talker.write(map[string]any{"type": "broadcast", "message": "three"})
	talker.write(map[string]any{"type": "broadcast", "message": "four"})
	talker.awaitMessage("four")
	awaitOutput(t, &out, "reconnected to #lobby")
	talker.write(map[string]any{"type": "broadcast", "message": "five"})
	awaitOutput(t, &out, "talker: five")
	inW.Close()
	if code := <-exited; code != 0 {
		t.Fatalf("chat exited %d: %s", code, errOut.String())
	}

	var said []string
	for _, line := range strings.Split(out.String(), "\n") {
		if _, text, ok := strings.Cut(line, " talker: "); ok {
			said = append(said, text)
		}
	}
	if strings.Join(said, ",") != "one,two,three,four,five" {
		t.Fatalf("chat showed %q, want each of one..five once, in order:\n%s", said, out.String())
	}
	if !strings.Contains(errOut.String(), "reconnecting") {
		t.Errorf("stderr does not say it reconnected: %q", errOut.String())
	}
}
