package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startDurable runs a chatd keeping history in the database at path.
func startDurable(t *testing.T, path string, mutate ...func(*Config)) *Main {
	t.Helper()
	return startServer(t, append([]func(*Config){func(c *Config) { c.DataPath = path }}, mutate...)...)
}

// closeNow stops m before the test ends (a restart); its cleanup then finds
// it closed.
func closeNow(t *testing.T, m *Main) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// resumedAfter checks that joined resumed from seq last and returns the
// events it carries, which must be every one after last, in order, and
// the seq that comes next.
func resumedAfter(t *testing.T, joined msg, last int64) ([]msg, int64) {
	t.Helper()
	if joined["resumed"] != true {
		t.Fatalf("joined %v, want resumed", joined)
	}
	var events []msg
	want := last + 1
	for _, h := range joined["history"].([]any) {
		e := msg(h.(map[string]any))
		if e.num("seq") != want {
			t.Fatalf("resumed history has seq %d, want %d: %v", e.num("seq"), want, joined["history"])
		}
		want++
		events = append(events, e)
	}
	return events, want
}

// position is where a client's view of a room ended.
type position struct {
	epoch string
	seq   int64
}

// TestResumeAcrossRestart: history survives a restart, seq continues, and a
// client that reconnects with its last seq gets exactly what it missed
// (across the restart), then live events, with nothing twice.
func TestResumeAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	m := startDurable(t, path)
	talker, resumer := dialTCP(t, m, "talker"), dialTCP(t, m, "resumer")
	talker.login("talker")
	epoch := resumer.login("resumer").str("epoch")
	if epoch == "" {
		t.Fatal("login reply has no epoch")
	}
	talker.say("before 1")
	talker.say("before 2")
	last := resumer.awaitMessage("before 2").num("seq")
	resumer.close()
	talker.await("resumer's leave", func(x msg) bool { return x.str("type") == "leave" })
	talker.say("missed 1")
	talker.awaitMessage("missed 1")
	talker.request(`{"type":"join","room":"go"}`)
	talker.awaitType("joined")
	talker.request(`{"type":"broadcast","room":"go","message":"in go"}`)
	talker.awaitMessage("in go")
	closeNow(t, m)

	m2 := startDurable(t, path)
	talker = dialTCP(t, m2, "talker again")
	talker.login("talker")
	talker.say("missed 2")
	talker.awaitMessage("missed 2")

	back := dialTCP(t, m2, "resumer again")
	back.send(fmt.Sprintf(`{"type":"login","nickname":"resumer","protocol":1,"epoch":%q,"after":%d}`, epoch, last))
	if reply := back.awaitType("login"); reply.str("epoch") != epoch {
		t.Fatalf("epoch %q after the restart, was %q", reply.str("epoch"), epoch)
	}
	// Everything after `last`, in order: the resumer's own leave, the
	// missed message, talker's leave (the restart), talker's join and the
	// message after the restart.
	resumed, want := resumedAfter(t, back.awaitType("joined"), last)
	var texts []string
	for _, e := range resumed {
		if e.str("type") == "message" {
			texts = append(texts, e.str("message"))
		}
	}
	if strings.Join(texts, ",") != "missed 1,missed 2" {
		t.Fatalf("resumed messages %q, want [missed 1 missed 2]", texts)
	}
	talker.say("live")
	if got := back.awaitMessage("live"); got.num("seq") != want+1 { // want: resumer's own join, not sent to it
		t.Fatalf("live message seq %d, want %d", got.num("seq"), want+1)
	}
	// The rooms survive the restart, with their history.
	back.request(`{"type":"rooms"}`)
	if rooms := back.awaitType("rooms")["rooms"].([]any); len(rooms) != 2 || msg(rooms[0].(map[string]any)).str("room") != "go" {
		t.Fatalf("rooms after the restart: %v, want go and lobby", rooms)
	}
	back.request(`{"type":"join","room":"go"}`)
	if h := back.awaitType("joined")["history"].([]any); len(h) != 1 || msg(h[0].(map[string]any)).str("message") != "in go" {
		t.Fatalf("#go's history after the restart: %v", h)
	}

	// Another epoch (another database) cannot resume: the latest messages
	// and a gap.
	other := dialWS(t, m2, "stranger")
	other.send(`{"type":"login","nickname":"stranger","protocol":1,"epoch":"0000","after":3}`)
	if j := other.awaitType("joined"); j["gap"] != true || j["resumed"] == true {
		t.Fatalf("resume from another epoch: %v, want a gap", j)
	}
}

// TestSearchOverTheWire: search finds a room's messages, Chinese included,
// only for its members, and FTS syntax in a query is just text.
func TestSearchOverTheWire(t *testing.T) {
	m := startDurable(t, filepath.Join(t.TempDir(), "chat.db"))
	a, b := dialTCP(t, m, "a"), dialWS(t, m, "b")
	a.login("a")
	b.login("b")
	a.say("用户 carol(4)加入聊天室")
	a.say("deploy \"now\" AND NEAR(x)")
	a.awaitMessage("deploy \"now\" AND NEAR(x)")
	for q, want := range map[string]int{"聊天室": 1, "DEPLOY": 1, `"now" AND NEAR(`: 1, "absent": 0} {
		b.request(`{"type":"search","room":"lobby","query":%q}`, q)
		res := b.awaitType("search")
		if got := len(res["messages"].([]any)); got != want {
			t.Errorf("search %q: %d results, want %d", q, got, want)
		}
	}
	b.request(`{"type":"search","room":"elsewhere","query":"x"}`)
	b.awaitError("not in that room")
	b.request(`{"type":"search","room":"lobby","query":"  "}`)
	b.awaitError("invalid search")
}

// TestSecondChatdOnTheSameFileIsRefused: the lock, through Main.
func TestSecondChatdOnTheSameFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	startDurable(t, path)
	second := NewMain(Config{TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataPath: path})
	if err := second.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "in use by another chatd") {
		t.Fatalf("second chatd on the same file: %v, want refused", err)
	}
}

// process is chatd running as a process of its own.
type process struct {
	cmd      *exec.Cmd
	waitDone chan struct{} // closed once it has exited
}

// chatdProcess runs chatd as a process of its own (this test binary; see
// TestMain) and returns it with its TCP address.
func chatdProcess(t *testing.T, args ...string) (*process, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHATD_MAIN_ARGS="+strings.Join(append([]string{"-tcp", "127.0.0.1:0", "-http", "127.0.0.1:0"}, args...), " "))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, waitDone: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.waitDone) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.waitDone })
	addr := make(chan string, 1)
	var logMu sync.Mutex
	var logged []string
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		re := regexp.MustCompile(`tcp=(127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logged = append(logged, sc.Text())
			logMu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	t.Cleanup(func() { // what the process logged, when it matters
		_ = cmd.Process.Kill()
		<-readDone
		if t.Failed() {
			logMu.Lock()
			defer logMu.Unlock()
			t.Logf("chatd process %v logged:\n%s", args, strings.Join(logged, "\n"))
		}
	})
	select {
	case a := <-addr:
		return p, a
	case <-time.After(waitTime):
		t.Fatal("chatd process did not start")
		return nil, ""
	}
}

// TestKill9KeepsEveryAcknowledgedMessage: chatd is killed (SIGKILL) while a
// client sends as fast as it can; after a restart on the same file every
// message whose echo (acknowledgement) came back is in history, once, in
// order, and seq continues from there.
func TestKill9KeepsEveryAcknowledgedMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	proc, addr := chatdProcess(t, "-data", path, "-rate", "-1")
	sender := tcpClient(t, dial(t, addr), "sender")
	sender.login("sender")

	type ack struct {
		text string
		seq  int64
	}
	var (
		mu    sync.Mutex
		acked []ack
	)
	done := make(chan struct{})
	var echoed atomic.Int64
	go func() { // the writer: as fast as the server keeps up, 200 in flight
		defer close(done)
		for i := int64(0); i < 20000; i++ {
			for i-echoed.Load() > 200 {
				select {
				case <-time.After(time.Millisecond): // waiting for echoes the reader counts
				case <-proc.waitDone:
					return
				}
			}
			if err := sender.rawWrite([]byte(fmt.Sprintf(`{"type":"broadcast","message":"m%05d"}`+"\n", i))); err != nil {
				return
			}
		}
	}()
	for {
		x, _, err := sender.recv(time.Now().Add(waitTime))
		if err != nil {
			break // killed
		}
		if x.str("type") == "message" {
			mu.Lock()
			acked = append(acked, ack{x.str("message"), x.num("seq")})
			n := len(acked)
			mu.Unlock()
			echoed.Store(int64(n))
			if n == 2000 {
				_ = proc.cmd.Process.Signal(syscall.SIGKILL)
			}
		}
	}
	<-done
	if len(acked) < 2000 {
		t.Fatalf("only %d messages acknowledged before the kill", len(acked))
	}

	_, addr = chatdProcess(t, "-data", path)
	reader := tcpClient(t, dial(t, addr), "reader")
	reader.login("reader")
	var stored []ack
	for _, e := range allHistory(reader, "lobby") {
		stored = append(stored, ack{e.str("message"), e.num("seq")})
	}
	seen := map[string]int{}
	for _, s := range stored {
		seen[s.text]++
	}
	for i, a := range acked {
		if seen[a.text] != 1 {
			t.Fatalf("acknowledged message %d (%s, seq %d) is in history %d times", i, a.text, a.seq, seen[a.text])
		}
	}
	for i := 1; i < len(stored); i++ {
		if stored[i].seq <= stored[i-1].seq || stored[i].text <= stored[i-1].text {
			t.Fatalf("history out of order at %d: %v then %v", i, stored[i-1], stored[i])
		}
	}
	reader.say("after the restart")
	if got := reader.awaitMessage("after the restart").num("seq"); got <= acked[len(acked)-1].seq {
		t.Fatalf("seq %d after the restart, not above the last acknowledged %d", got, acked[len(acked)-1].seq)
	}
	t.Logf("%d messages acknowledged before SIGKILL, %d in history after the restart (unacknowledged ones may be there too)", len(acked), len(stored))
}

// TestFullDiskRefusesSendsKeepsTheRest: when the database cannot grow (a
// full disk), a send is refused with a clear error and delivered to nobody,
// /readyz says not ready, and everything else carries on: connections stay,
// private messages flow, and what was acknowledged before is still there.
func TestFullDiskRefusesSendsKeepsTheRest(t *testing.T) {
	r := newRoom(t, func(c *Config) {
		c.DataPath = filepath.Join(t.TempDir(), "chat.db")
		c.DataMaxPages = 60
		c.Session.RequestRate = -1
		c.Logger = slog.New(slog.DiscardHandler) // the errors are expected
	})
	readyz := func() int {
		resp, err := http.Get("http://" + r.m.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("readyz %d before", code)
	}
	r.sender.awaitMessage("before") // its own echo from newRoom
	big := strings.Repeat("z", 4000)
	var acked []string
	for i := 0; ; i++ {
		if i == 500 {
			t.Fatal("500 big messages saved: the cap did not hold")
		}
		text := fmt.Sprintf("%d %s", i, big)
		r.sender.say(text)
		reply := r.sender.await("echo or error", func(m msg) bool { return m.str("type") == "message" || m.str("type") == "error" })
		if reply.str("type") == "error" {
			if reply.str("error") != "could not save the message: try again later" {
				t.Fatalf("refusal %q", reply.str("error"))
			}
			break
		}
		acked = append(acked, text)
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d while the database is full, want 503", code)
	}
	// The witness got exactly what was acknowledged, then nothing.
	for _, text := range acked {
		r.witness.awaitMessage(text)
	}
	r.sender.request(`{"type":"private","to":"witness","message":"still here"}`)
	if got := r.witness.awaitType("private"); got.str("message") != "still here" {
		t.Fatalf("witness got %v", got)
	}
	if got := len(allHistory(r.witness, "lobby")); got < len(acked) {
		t.Fatalf("history has %d messages, %d were acknowledged", got, len(acked))
	}
}

// allHistory reads a room's whole history back, page by page, oldest first.
func allHistory(c *client, room string) []msg {
	c.t.Helper()
	var all []msg
	before := int64(0)
	for {
		c.request(`{"type":"history","room":%q,"before":%d,"limit":200}`, room, before)
		page := c.awaitType("history")["messages"].([]any)
		if len(page) == 0 {
			return all
		}
		chunk := make([]msg, len(page))
		for i, h := range page {
			chunk[i] = msg(h.(map[string]any))
		}
		all = append(chunk, all...)
		if before = chunk[0].num("seq"); before <= 1 {
			return all
		}
	}
}
