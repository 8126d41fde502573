package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"

	"chatroom/hub/admission"
)

// natsServer is an embedded NATS server with JetStream, on loopback, that
// a test may stop and start again on the same port and store (an outage).
type natsServer struct {
	t    *testing.T
	dir  string
	port int
	ns   *server.Server
}

// startNATS starts a NATS server with JetStream in a temporary directory.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir(), port: -1}
	n.start()
	n.port = n.ns.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true,
		StoreDir: filepath.Join(n.dir, "js"), NoLog: true, NoSigs: true, ServerName: "test"})
	if err != nil {
		n.t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(waitTime) {
		n.t.Fatal("nats-server not ready")
	}
	n.ns = ns
}

func (n *natsServer) stop() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
		n.ns = nil
	}
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// startNode runs a chatd that is one node of the cluster on n.
func startNode(t *testing.T, n *natsServer, name string, mutate ...func(*Config)) *Main {
	t.Helper()
	return startServer(t, append([]func(*Config){func(c *Config) {
		c.NATSURL, c.NodeName = n.url(), name
		c.NodeDeadAfter = 2 * time.Second
		// Tests connect fast and often from one address (and poll
		// /readyz): no per-address limits.
		c.Admission = admission.Options{MaxConnsPerIP: -1, ConnRatePerIP: -1}
	}}, mutate...)...)
}

// startCluster runs nodes chatd nodes on one NATS server.
func startCluster(t *testing.T, nodes int, mutate ...func(*Config)) (*natsServer, []*Main) {
	t.Helper()
	n := startNATS(t)
	ms := make([]*Main, nodes)
	for i := range ms {
		ms[i] = startNode(t, n, fmt.Sprintf("node%d", i+1), mutate...)
	}
	return n, ms
}

func TestClusterChatAcrossNodes(t *testing.T) {
	_, nodes := startCluster(t, 2)
	alice := dialTCP(t, nodes[0], "alice")
	alice.login("alice")
	bob := dialWS(t, nodes[1], "bob")
	bob.login("bob")
	alice.await("bob's join", func(x msg) bool { return x.str("type") == "join" && x.str("message") == "bob joined" })

	bob.say("hello from node 2")
	got := alice.awaitMessage("hello from node 2")
	if got.num("sender_id") != bob.id || got.str("sender_nickname") != "bob" {
		t.Fatalf("alice got %v", got)
	}
	alice.say("hello from node 1")
	echo := bob.awaitMessage("hello from node 1")
	own := alice.awaitMessage("hello from node 1")
	// One order: both see alice's message at one seq, after bob's (not
	// necessarily right after: alice's own join may have lost the race
	// for its place to bob's message, and taken the next).
	if echo.num("seq") != own.num("seq") || echo.num("seq") <= got.num("seq") {
		t.Fatalf("alice's message: seq %d for bob, %d for alice, after bob's at %d", echo.num("seq"), own.num("seq"), got.num("seq"))
	}
	if alice.id == bob.id {
		t.Fatalf("two members share id %d", alice.id)
	}

	// Search and scroll-back on either node find what was said on the other.
	for _, c := range []*client{alice, bob} {
		c.request(`{"type":"search","room":"lobby","query":"FROM NODE"}`)
		if res := c.awaitType("search")["messages"].([]any); len(res) != 2 {
			t.Fatalf("%s: search found %v, want both messages", c.name, res)
		}
		c.request(`{"type":"history","room":"lobby","before":%d,"limit":10}`, own.num("seq"))
		if h := c.awaitType("history")["messages"].([]any); len(h) != 1 || msg(h[0].(map[string]any)).str("message") != "hello from node 2" {
			t.Fatalf("%s: history before alice's message: %v", c.name, h)
		}
	}

	// A node shutting down tells everyone, on every node; its members'
	// leaves are announced to the others.
	closeNow(t, nodes[1])
	if n := alice.awaitType("notice"); !strings.Contains(n.str("message"), "shutting down") {
		t.Fatalf("alice got %v", n)
	}
	alice.await("bob's leave", func(x msg) bool { return x.str("type") == "leave" && strings.Contains(x.str("message"), "bob") })
}

// TestClusterEverythingReachesEveryNode: three nodes, a member on each
// (TCP, WebSocket, and the seed's Python client): messages, presence
// (member lists, room counts), private messages by nickname and by id,
// typing, renames and joins reach every node; nicknames are unique across
// them, whatever the case.
func TestClusterEverythingReachesEveryNode(t *testing.T) {
	_, nodes := startCluster(t, 3)
	ann := dialTCP(t, nodes[0], "ann")
	ann.login("ann")
	bob := dialWS(t, nodes[1], "bob")
	bob.login("bob")
	py := startSeedClient(t, nodes[2])
	py.await("[Welcome]")
	py.typeLine("login 张三")
	py.await("成功登录到聊天室")
	ann.await("张三's join", func(x msg) bool { return x.str("type") == "join" && x.str("message") == "张三 joined" })

	bob.say("hello from node 2")
	py.await(fmt.Sprintf("[bob(%d)] hello from node 2", bob.id))
	ann.awaitMessage("hello from node 2")
	py.typeLine("send 你好 from node 3")
	if got := bob.awaitMessage("你好 from node 3"); got.str("sender_nickname") != "张三" {
		t.Fatalf("bob got %v", got)
	}

	// A nickname taken on another node is taken here, in any case.
	dup := dialTCP(t, nodes[0], "dup")
	dup.send(`{"type":"login","nickname":"BOB","protocol":1}`)
	if r := dup.awaitType("login"); r.str("status") == "ok" {
		t.Fatalf("BOB logged in on node 1 while bob is on node 2: %v", r)
	}

	// Presence: bob, on node 2, sees everyone in lists.
	bob.request(`{"type":"join","room":"go"}`)
	bob.awaitJoined("go")
	// Presence is eventually consistent: a join a few milliseconds old
	// on another node may not be in a list yet.
	waitFor(t, "node 1 to see bob in #go", func() bool { return roomSize(nodes[0], "go") == 1 })
	ann.request(`{"type":"join","room":"go"}`)
	if j := ann.awaitJoined("go"); len(j["members"].([]any)) != 2 {
		t.Fatalf("ann joined #go with members %v, want ann and bob", j["members"])
	}
	bob.await("ann's join in #go", func(x msg) bool { return x.str("type") == "join" && x.str("room") == "go" })
	waitFor(t, "node 3 to count two in #go", func() bool { return roomSize(nodes[2], "go") == 2 })
	waitFor(t, "bob to list three in the lobby", func() bool {
		bob.request(`{"type":"members","room":"lobby"}`)
		return len(bob.awaitType("members")["members"].([]any)) == 3
	})

	// Private messages, by nickname and by id, both ways.
	ann.request(`{"type":"private","to":"BOB","message":"secret 1"}`)
	if p := bob.awaitType("private"); p.str("message") != "secret 1" || p.str("sender_nickname") != "ann" {
		t.Fatalf("bob got %v", p)
	}
	ann.awaitType("private") // the sender's copy
	bob.request(`{"type":"private","to_id":%d,"message":"secret 2"}`, ann.id)
	if p := ann.awaitType("private"); p.str("message") != "secret 2" || p.num("sender_id") != bob.id {
		t.Fatalf("ann got %v", p)
	}

	// Typing and renames.
	bob.request(`{"type":"typing","room":"go"}`)
	if ty := ann.awaitType("typing"); ty.str("sender_nickname") != "bob" || ty.str("room") != "go" {
		t.Fatalf("ann got %v", ty)
	}
	bob.request(`{"type":"nick","nickname":"robert"}`)
	bob.awaitType("nick")
	if r := ann.awaitType("rename"); r.str("message") != "bob is now robert" {
		t.Fatalf("ann got %v", r)
	}
	// bob's old nickname is free again, on any node; robert is not.
	again := dialTCP(t, nodes[2], "bob again")
	waitFor(t, "bob to be free", func() bool {
		again.send(`{"type":"login","nickname":"bob","protocol":1}`)
		return again.awaitType("login").str("status") == "ok"
	})
	waitFor(t, "node 1 to know robert", func() bool {
		_, ok := nodes[0].Cluster.MemberByKey("robert")
		return ok
	})
	ann.request(`{"type":"private","to":"robert","message":"to the new name"}`)
	bob.awaitType("private")
}

// TestClusterNicknameRace: twenty connections on two nodes race for one
// nickname, in several spellings: exactly one wins.
func TestClusterNicknameRace(t *testing.T) {
	_, nodes := startCluster(t, 2)
	spellings := []string{"racer", "RACER", "Racer", "ｒａｃｅｒ"}
	wins := make(chan int64, 20)
	done := make(chan struct{})
	for i := range 20 {
		c := dialTCP(t, nodes[i%2], fmt.Sprintf("racer%d", i))
		go func() {
			defer func() { done <- struct{}{} }()
			c.send(fmt.Sprintf(`{"type":"login","nickname":%q,"protocol":1}`, spellings[i%len(spellings)]))
			m, _, err := c.recv(time.Now().Add(waitTime))
			if err == nil && m.str("status") == "ok" {
				wins <- m.num("id")
			}
		}()
	}
	for range 20 {
		<-done
	}
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d logins won the nickname, want exactly 1", n)
	}
}

// TestClusterOrderUnderConcurrentSenders: three senders on each of three
// nodes send at once, as fast as they may; a witness on each node sees
// the lobby's events in one order, the same on every node, with seq
// contiguous and every message once.
func TestClusterOrderUnderConcurrentSenders(t *testing.T) {
	const perSender = 60
	_, nodes := startCluster(t, 3, func(c *Config) { c.Session.RequestRate = -1 })
	var witnesses []*client
	for i, n := range nodes {
		w := dialWS(t, n, fmt.Sprintf("witness%d", i+1))
		w.login(w.name)
		witnesses = append(witnesses, w)
	}
	var senders []*client
	for i := range 9 {
		var s *client
		if i%2 == 0 {
			s = dialTCP(t, nodes[i%3], fmt.Sprintf("sender%d", i))
		} else {
			s = dialWS(t, nodes[i%3], fmt.Sprintf("sender%d", i))
		}
		s.login(s.name)
		senders = append(senders, s)
	}
	start := make(chan struct{})
	for _, s := range senders {
		go func() {
			<-start
			for j := range perSender {
				if err := s.rawWrite([]byte(fmt.Sprintf(`{"type":"broadcast","message":"%s-%d"}`+"\n", s.name, j))); err != nil {
					return
				}
			}
		}()
	}
	close(start)
	total := len(senders) * perSender
	// Each witness's view: seq -> what it was. A member never sees its
	// own join; any other seq between its first and last it must see.
	views := make([]map[int64]string, len(witnesses))
	errs := make(chan error, len(witnesses))
	for i, w := range witnesses {
		views[i] = map[int64]string{}
		go func() {
			for n := 0; n < total; {
				m, _, err := w.recv(time.Now().Add(waitTime))
				if err != nil {
					errs <- fmt.Errorf("%s after %d messages: %w", w.name, n, err)
					return
				}
				if m.num("seq") == 0 {
					continue
				}
				if _, twice := views[i][m.num("seq")]; twice {
					errs <- fmt.Errorf("%s: seq %d twice", w.name, m.num("seq"))
					return
				}
				views[i][m.num("seq")] = m.str("type") + ":" + m.str("message")
				if m.str("type") == "message" {
					n++
				}
			}
			errs <- nil
		}()
	}
	for range witnesses {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	all := map[int64]string{}
	for i, v := range views {
		for seq, what := range v {
			if other, ok := all[seq]; ok && other != what {
				t.Fatalf("seq %d is %q for witness %d, %q for another", seq, what, i+1, other)
			}
			all[seq] = what
		}
	}
	for i, v := range views {
		lo, hi := int64(1<<62), int64(0)
		for seq := range v {
			lo, hi = min(lo, seq), max(hi, seq)
		}
		for seq := lo; seq <= hi; seq++ {
			if _, ok := v[seq]; !ok && all[seq] != fmt.Sprintf("join:witness%d joined", i+1) {
				t.Fatalf("witness %d missed seq %d (%q)", i+1, seq, all[seq])
			}
		}
	}
	texts := map[string]bool{}
	for _, what := range all {
		if texts[what] {
			t.Fatalf("%q has two seqs", what)
		}
		texts[what] = true
	}
}

// TestClusterNodeLossAndResumeElsewhere: a node is killed (SIGKILL, a
// process of its own). Within its dead time plus a heartbeat its members
// are announced leaving on the other node, in every room they were in,
// and their nicknames are free; one of them reconnects to the surviving
// node and resumes the lobby from its last seq: exactly what it missed,
// nothing twice.
func TestClusterNodeLossAndResumeElsewhere(t *testing.T) {
	n := startNATS(t)
	survivor := startNode(t, n, "survivor")
	proc, addr := chatdProcess(t, "-nats", n.url(), "-node", "doomed", "-node-dead-after", "2s", "-data", ":memory:", "-shop=false")

	ann := dialTCP(t, survivor, "ann")
	ann.login("ann")
	bob := tcpClient(t, dial(t, addr), "bob")
	epoch := bob.login("bob").str("epoch")
	bob.request(`{"type":"join","room":"go"}`)
	bob.awaitJoined("go")
	ann.request(`{"type":"join","room":"go"}`)
	ann.awaitJoined("go")
	bob.await("ann's join in #go", func(x msg) bool { return x.str("type") == "join" && x.str("room") == "go" })
	// bob's join in #go is announced (and his presence there published)
	// once it is in the stream: until then, the other node does not know
	// he is there, and would not announce him leaving it.
	waitFor(t, "the survivor to see bob in #go", func() bool { return roomSize(survivor, "go") == 2 })
	ann.say("seen by bob")
	last := bob.awaitMessage("seen by bob").num("seq")

	killed := time.Now()
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-proc.waitDone
	ann.say("missed by bob")
	ann.awaitMessage("missed by bob")
	left := map[string]bool{}
	for len(left) < 2 {
		x := ann.awaitType("leave")
		if x.str("nickname") != "" && x.str("nickname") != "bob" {
			t.Fatalf("unexpected leave %v", x)
		}
		if x.str("reason") != "connection lost" && !strings.Contains(x.str("message"), "connection lost") {
			t.Fatalf("leave %v, want reason 'connection lost'", x)
		}
		left[x.str("room")] = true
	}
	took := time.Since(killed)
	if !left["lobby"] || !left["go"] {
		t.Fatalf("bob announced leaving %v, want lobby and go", left)
	}
	t.Logf("bob's leaves announced %s after the kill (dead after 2s)", took.Round(time.Millisecond))
	ann.say("after bob left")
	ann.awaitMessage("after bob left")

	// bob comes back on the surviving node, as himself, from where he was.
	back := dialTCP(t, survivor, "bob again")
	back.send(fmt.Sprintf(`{"type":"login","nickname":"bob","protocol":1,"epoch":%q,"after":%d}`, epoch, last))
	if r := back.awaitType("login"); r.str("status") != "ok" || r.str("epoch") != epoch {
		t.Fatalf("bob's login on the surviving node: %v (epoch was %q)", r, epoch)
	}
	resumed, want := resumedAfter(t, back.awaitType("joined"), last)
	var texts []string
	for _, e := range resumed {
		texts = append(texts, e.str("type")+":"+e.str("message"))
	}
	if len(texts) != 3 || texts[0] != "message:missed by bob" || texts[2] != "message:after bob left" || !strings.HasPrefix(texts[1], "leave:") {
		t.Fatalf("resumed %q, want the missed message, bob's leave and the next message", texts)
	}
	ann.say("live again")
	if got := back.awaitMessage("live again"); got.num("seq") != want+1 { // want: bob's own join, not sent to him
		t.Fatalf("live seq %d, want %d", got.num("seq"), want+1)
	}
}

// TestClusterNATSOutage: NATS goes away and comes back (same port, same
// store). Meanwhile every node reports not ready and refuses sends with a
// clear error, and keeps its connections; afterwards they chat again, with
// nothing acknowledged lost and nothing delivered twice, and a node's
// database has the history without a hole.
func TestClusterNATSOutage(t *testing.T) {
	n := startNATS(t)
	quiet := func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) } // the outage's warnings are expected
	durable := startNode(t, n, "durable", quiet, func(c *Config) { c.DataPath = filepath.Join(t.TempDir(), "chat.db") })
	inMemory := startNode(t, n, "memory", quiet)
	nodes := []*Main{durable, inMemory}
	readyz := func(m *Main) int {
		resp, err := http.Get("http://" + m.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ann := dialTCP(t, durable, "ann")
	ann.login("ann")
	bob := dialWS(t, inMemory, "bob")
	bob.login("bob")
	for i := range 3 {
		ann.say(fmt.Sprintf("before %d", i))
	}
	bob.awaitMessage("before 2")

	n.stop()
	for _, m := range nodes {
		waitFor(t, "a node to say it is not ready", func() bool { return readyz(m) == http.StatusServiceUnavailable })
	}
	ann.say("during the outage")
	ann.awaitError("unreachable")
	bob.request(`{"type":"private","to":"ann","message":"also during"}`)
	bob.awaitError("unreachable")

	n.start()
	for _, m := range nodes {
		waitFor(t, "a node to be ready again", func() bool { return readyz(m) == http.StatusOK })
	}
	ann.say("after the outage")
	got := bob.await("the first message after the outage", func(x msg) bool { return x.str("type") == "message" })
	if got.str("message") != "after the outage" {
		t.Fatalf("bob's first message after the outage: %v", got)
	}
	ann.awaitMessage("after the outage") // acknowledged
	bob.request(`{"type":"private","to":"ann","message":"back"}`)
	ann.await("bob's private message", func(x msg) bool { return x.str("type") == "private" && x.str("message") == "back" })

	// A newcomer on either node gets the same history: no hole, nothing
	// refused, nothing twice.
	for i, m := range nodes {
		c := dialTCP(t, m, fmt.Sprintf("newcomer%d", i))
		c.login(c.name)
		var texts []string
		var prev int64
		for _, e := range allHistory(c, "lobby") {
			if prev != 0 && e.num("seq") <= prev {
				t.Fatalf("history out of order: %d after %d", e.num("seq"), prev)
			}
			prev = e.num("seq")
			texts = append(texts, e.str("message"))
		}
		if strings.Join(texts, ",") != "before 0,before 1,before 2,after the outage" {
			t.Fatalf("node %d's history after the outage: %q", i+1, texts)
		}
	}
}

// awaitJoined waits for the reply to joining room (the lobby's, after a
// login, may come first).
func (c *client) awaitJoined(room string) msg {
	c.t.Helper()
	return c.await("joined "+room, func(x msg) bool { return x.str("type") == "joined" && x.str("room") == room })
}

// TestClusterNodeRestartedUnderItsNameClearsItsLastRun: a node killed and
// started again at once under the same name is never silent long enough
// to be declared dead; it announces its last run's members gone itself,
// and frees their nicknames, before it serves.
func TestClusterNodeRestartedUnderItsNameClearsItsLastRun(t *testing.T) {
	n := startNATS(t)
	slow := func(c *Config) { c.NodeDeadAfter = time.Minute } // nobody is declared dead in this test
	survivor := startNode(t, n, "survivor", slow)
	proc, addr := chatdProcess(t, "-nats", n.url(), "-node", "phoenix", "-node-dead-after", "1m", "-data", ":memory:", "-shop=false")
	ann := dialTCP(t, survivor, "ann")
	ann.login("ann")
	carl := tcpClient(t, dial(t, addr), "carl")
	carl.login("carl")
	ann.await("carl's join", func(x msg) bool { return x.str("type") == "join" && x.str("message") == "carl joined" })
	waitFor(t, "the survivor to see carl", func() bool {
		_, ok := survivor.Cluster.MemberByKey("carl")
		return ok
	})
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-proc.waitDone
	startNode(t, n, "phoenix", slow)
	if x := ann.awaitType("leave"); !strings.Contains(x.str("message"), "carl") || x.str("reason") != "connection lost" {
		t.Fatalf("ann got %v, want carl's leave", x)
	}
	again := dialTCP(t, survivor, "carl again")
	again.login("carl")
}

// TestBrowserInAClusterChatsWithTerminals is README's recipe: a browser on
// node 1, a terminal client on node 2 and the seed's Python client on
// node 3 chat in the lobby; the page lists all three.
func TestBrowserInAClusterChatsWithTerminals(t *testing.T) {
	_, nodes := startCluster(t, 3)
	term := dialTCP(t, nodes[1], "term")
	term.login("term")
	py := startSeedClient(t, nodes[2])
	py.await("[Welcome]")
	py.typeLine("login 张三")
	py.await("成功登录到聊天室")
	term.await("张三's join", func(x msg) bool { return x.str("message") == "张三 joined" })

	web := tab{t, newBrowser(t)}
	web.do("desktop size", chromedp.EmulateViewport(1100, 700))
	web.login(nodes[0].HTTPAddr(), "web")
	term.await("the browser's join", func(x msg) bool { return x.str("message") == "web joined" })
	web.say("hello from node 1")
	web.waitFor("its own message", messageXPath("hello from node 1"))
	term.awaitMessage("hello from node 1")
	py.await("hello from node 1")
	term.say("hello from node 2")
	web.waitFor("node 2's message", messageXPath("hello from node 2"))
	py.typeLine("send 你好 from node 3")
	web.waitFor("node 3's message", messageXPath("你好 from node 3"))
	web.waitFor("three members listed", `//ul[@id="member-list" and count(li)=3]`)
}

// roomSize is how many members m counts in room, cluster-wide (0: no such room).
func roomSize(m *Main, room string) int {
	for _, r := range m.Hub.Rooms(0) {
		if r.Name == room {
			return r.Members
		}
	}
	return 0
}
