package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"chatroom/hub/nats"
	"chatroom/hub/session"
)

func TestMain(m *testing.M) {
	// A test that needs chatd as a process of its own (to kill -9 it)
	// runs this test binary with the arguments in CHATD_MAIN_ARGS.
	if args := os.Getenv("CHATD_MAIN_ARGS"); args != "" {
		if err := run(strings.Fields(args), os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "chatd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	var ignore []goleak.Option
	for _, f := range nats.LeakedByTheClient { // see there
		ignore = append(ignore, goleak.IgnoreTopFunction(f))
	}
	goleak.VerifyTestMain(m, ignore...)
}

func TestTCPClientsChat(t *testing.T) {
	m := startServer(t)
	alice := dialTCP(t, m, "alice")
	alice.login("alice")
	bob := dialTCP(t, m, "bob")
	bob.loginOriginal("bob")
	alice.await("bob's join", func(x msg) bool { return x.str("type") == "join" && x.str("message") == "bob joined" })

	// Exactly what the seed client sends, sender_id included.
	bob.send(fmt.Sprintf(`{"type": "broadcast", "sender_id": %d, "message": "\u4f60\u597d hello \ud83d\ude00"}`, bob.id))
	got := alice.awaitMessage("你好 hello 😀")
	if got.num("sender_id") != bob.id || got.str("sender_nickname") != "bob" || got.num("seq") == 0 || got.str("time") == "" {
		t.Fatalf("alice got %v", got)
	}

	alice.say("hi bob")
	echo := alice.awaitMessage("hi bob") // extended clients get their own message back, sequenced
	if echo.num("sender_id") != alice.id || echo.num("seq") <= got.num("seq") {
		t.Fatalf("alice's echo %v does not follow %v", echo, got)
	}
	push := bob.next()
	if len(push) != 3 || push.str("message") != "hi bob" || push.num("sender_id") != alice.id || push.str("sender_nickname") != "alice" {
		t.Fatalf("original client got %v, want exactly sender_id, sender_nickname, message", push)
	}
	// bob does not get his own message back: the next thing he sees is alice's.
	alice.say("second")
	if next := bob.next(); next.str("message") != "second" {
		t.Fatalf("bob got %v, want alice's second message (no echo of his own)", next)
	}
}

func TestBrowsersAndTerminalsShareOneRoomInOneOrder(t *testing.T) {
	m := startServer(t, func(c *Config) { c.Session.RequestRate = -1 }) // bursts beyond a person's
	ws1, ws2, term := dialWS(t, m, "ws1"), dialWS(t, m, "ws2"), dialTCP(t, m, "term")
	ws1.login("ws1")
	ws2.login("ws2")
	term.login("term")

	ws1.say("from the browser")
	term.awaitMessage("from the browser")
	ws2.awaitMessage("from the browser")
	term.say("from the terminal")
	ws1.awaitMessage("from the terminal")
	ws2.awaitMessage("from the terminal")

	// Everyone sends at once; everyone must see the same sequence.
	const each = 30
	senders := []*client{ws1, ws2, term}
	var wg sync.WaitGroup
	for _, c := range senders {
		wg.Go(func() {
			for i := range each {
				c.say(fmt.Sprintf("%s-%d", c.name, i))
			}
		})
	}
	orders := make([][]string, len(senders))
	for i, c := range senders {
		wg.Go(func() {
			for len(orders[i]) < each*len(senders) {
				x := c.next()
				if x.str("type") == "message" && strings.Contains(x.str("message"), "-") {
					orders[i] = append(orders[i], fmt.Sprintf("%d:%s", x.num("seq"), x.str("message")))
				}
			}
		})
	}
	wg.Wait()
	for i := 1; i < len(orders); i++ {
		if fmt.Sprint(orders[i]) != fmt.Sprint(orders[0]) {
			t.Fatalf("%s and %s saw different orders:\n%v\n%v", senders[0].name, senders[i].name, orders[0], orders[i])
		}
	}
}

func TestOriginalClientFraming(t *testing.T) {
	m := startServer(t)
	watcher := dialTCP(t, m, "watcher")
	watcher.login("watcher")
	py := dialTCP(t, m, "py")

	// No newline anywhere, as json.dumps(...).encode() sends it.
	py.send(`{"type": "login", "nickname": "py"}`)
	if reply := py.next(); reply.num("id") <= 0 || reply.str("status") != "ok" {
		t.Fatalf("login reply %v", reply)
	}
	// Two objects in one write, then one object split across two writes.
	py.send(`{"type": "broadcast", "sender_id": 2, "message": "one"}{"type": "broadcast", "sender_id": 2, "message": "two"}`)
	py.send(`{"type": "broadcast", "sender_id": 2, "mess`)
	py.send(`age": "three"}`)
	for _, want := range []string{"one", "two", "three"} {
		watcher.awaitMessage(want)
	}

	// A message too long for one recv(1024) reaches the original client as
	// several pushes, each a whole object under 1024 bytes.
	long := strings.Repeat("长", 1300) // 3900 bytes: under the 4096-byte limit
	watcher.say(long)
	var rebuilt strings.Builder
	for rebuilt.Len() < len(long) {
		x, raw, err := py.recv(time.Now().Add(waitTime))
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) > 1023 {
			t.Fatalf("push of %d bytes would not fit the original client's recv(1024)", len(raw))
		}
		if len(x) != 3 {
			t.Fatalf("original client got %v", x)
		}
		rebuilt.WriteString(x.str("message"))
	}
	if rebuilt.String() != long {
		t.Fatal("long message did not arrive intact")
	}
}

func TestRefusedLoginsKeepTheConnection(t *testing.T) {
	m := startServer(t)
	dialTCP(t, m, "first").login("Alice")
	c := dialTCP(t, m, "c")
	for nick, why := range map[string]string{
		"alice":                 "taken",
		"":                      "empty",
		"   ":                   "empty",
		strings.Repeat("n", 33): "longer than 32",
		"evil\u0007bell":        "control character",
		"tab\tname":             "control character",
	} {
		b, _ := json.Marshal(nick)
		c.send(`{"type": "login", "nickname": ` + string(b) + `}`)
		reply := c.next()
		if reply.str("status") != "error" || reply.num("id") != 0 || !strings.Contains(reply.str("error"), why) {
			t.Errorf("login %q: reply %v, want status error, id 0 and %q", nick, reply, why)
		}
	}
	c.loginOriginal("carol") // the same connection may try again
}

func TestSpoofedSenderIsRefused(t *testing.T) {
	m := startServer(t)
	alice := dialTCP(t, m, "alice")
	alice.login("alice")
	mallory := dialTCP(t, m, "mallory")
	mallory.loginOriginal("mallory")
	ext := dialTCP(t, m, "ext")
	ext.login("ext")
	mallory.await("ext's join", func(x msg) bool { return strings.Contains(x.str("message"), "ext(") })

	for _, spoof := range []string{fmt.Sprint(alice.id), "0", "-1", `"x"`} {
		mallory.send(fmt.Sprintf(`{"type": "broadcast", "sender_id": %s, "message": "I am someone else"}`, spoof))
		refusal := mallory.next()
		if refusal.num("sender_id") != 0 || !strings.Contains(refusal.str("message"), "not your id") {
			t.Fatalf("mallory got %v, want a System refusal", refusal)
		}
	}
	ext.send(fmt.Sprintf(`{"type":"broadcast","sender_id":%d,"message":"nope"}`, alice.id))
	if e := ext.await("error", func(x msg) bool { return x.str("type") == "error" }); e.str("request") != "broadcast" {
		t.Fatalf("extended refusal %v", e)
	}
	mallory.send(fmt.Sprintf(`{"type": "broadcast", "sender_id": %d, "message": "honest"}`, mallory.id))
	// Alice's next message is the honest one: nothing spoofed was relayed.
	next := alice.await("a message", func(x msg) bool { return x.str("type") == "message" })
	if next.str("message") != "honest" || next.num("sender_id") != mallory.id {
		t.Fatalf("alice got %v, want mallory's honest message", next)
	}
}

func TestRequestsBeforeLoginAndBadInput(t *testing.T) {
	m := startServer(t)
	orig := dialTCP(t, m, "orig")
	// An original client is not sent anything it cannot parse: the refusal is
	// only logged, and its first object is still the login reply.
	orig.send(`{"type": "broadcast", "sender_id": null, "message": "too early"}`)
	orig.send("garbage\n")
	orig.loginOriginal("orig")

	ext := dialTCP(t, m, "ext")
	ext.send(`{"type":"broadcast","message":"too early","protocol":1}`)
	if e := ext.next(); e.str("type") != "error" || !strings.Contains(e.str("error"), "not logged in") {
		t.Fatalf("pre-login broadcast: %v", e)
	}
	ext.login("ext")
	for raw, want := range map[string]string{
		"hello there\n":                                     "not a JSON object",
		`{"type":"broadcast","message":}`:                   "malformed",
		"{\"type\":\"broadcast\",\"message\":\"\xff\xfe\"}": "UTF-8",
		`{"type":"broadcast","message":42}`:                 `"message" must be a string`,
		`{"type":"dance"}`:                                  "unknown request type",
		`{"type":"login","nickname":"again"}`:               "already logged in",
		`{"type":"broadcast","message":"   "}`:              "empty",
	} {
		ext.send(raw)
		e := ext.await("error", func(x msg) bool { return x.str("type") == "error" })
		if !strings.Contains(e.str("error"), want) {
			t.Errorf("%q: error %q, want %q", raw, e.str("error"), want)
		}
	}
	// Still connected, and nothing bad was relayed to the original client.
	ext.say("still here")
	orig.await("ext's join", func(x msg) bool { return strings.Contains(x.str("message"), "ext(") })
	if x := orig.next(); x.str("message") != "still here" {
		t.Fatalf("orig got %v", x)
	}
	ext.send(`{"type":"members"}`)
	if ms := ext.await("members", func(x msg) bool { return x.str("type") == "members" }); len(ms["members"].([]any)) != 2 {
		t.Fatalf("members %v", ms)
	}
}

func TestDisconnectIsAnnouncedAsLeave(t *testing.T) {
	m := startServer(t)
	alice := dialTCP(t, m, "alice")
	alice.login("alice")
	carol := dialTCP(t, m, "carol")
	carol.loginOriginal("carol")
	bob := dialWS(t, m, "bob")
	bob.login("bob")
	alice.await("bob's join", func(x msg) bool { return x.str("type") == "join" && x.str("message") == "bob joined" })
	carol.await("bob's join", func(x msg) bool { return strings.Contains(x.str("message"), "bob(") })

	bob.close()
	leave := alice.await("bob's leave", func(x msg) bool { return x.str("type") == "leave" })
	member, _ := leave["member"].(map[string]any)
	if member["nickname"] != "bob" || int64(member["id"].(float64)) != bob.id {
		t.Fatalf("leave %v", leave)
	}
	want := fmt.Sprintf("用户 bob(%d)离开聊天室", bob.id)
	carol.await(want, func(x msg) bool { return x.str("message") == want && x.num("sender_id") == 0 })
	// The nickname is free again.
	dialTCP(t, m, "bob2").login("bob")
}

func TestSlowClientIsDroppedOthersCarryOn(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Session = session.Options{QueueMessages: 64, QueueBytes: 256 << 10, RequestRate: -1}
	})
	slow := dialTCP(t, m, "slow")
	slow.login("slow")
	fast := dialTCP(t, m, "fast")
	fast.login("fast")
	sender := dialTCP(t, m, "sender")
	sender.loginOriginal("sender") // original protocol: no echoes to read
	fast.await("sender's join", func(x msg) bool { return x.str("message") == "sender joined" })

	// Flood until the slow client (which never reads) is dropped, in rounds
	// the fast client reads completely, so that only the slow one falls behind.
	payload := strings.Repeat("x", 3000)
	sent, received, dropped := 0, 0, false
	receive := func(until string) {
		for {
			x := fast.next()
			if x.str("type") == "leave" {
				if !strings.Contains(x.str("reason"), "slow consumer") || x.str("message") != "slow left ("+x.str("reason")+")" {
					t.Fatalf("leave %v, want slow consumer", x)
				}
				dropped = true
				continue
			}
			if x.str("type") != "message" {
				continue
			}
			if x.str("message") == until {
				return
			}
			if want := fmt.Sprintf("%d ", received); !strings.HasPrefix(x.str("message"), want) {
				t.Fatalf("fast client lost or reordered a message: got %.10q, want %q", x.str("message"), want)
			}
			received++
		}
	}
	for round := 0; !dropped && round < 1000; round++ {
		for range 32 {
			sender.say(fmt.Sprintf("%d %s", sent, payload))
			sent++
		}
		sender.say(fmt.Sprintf("round %d", round))
		receive(fmt.Sprintf("round %d", round))
	}
	if !dropped || received != sent {
		t.Fatalf("dropped=%v; fast client received %d of %d messages", dropped, received, sent)
	}
	if _, err := slow.awaitClosed(); err == nil {
		t.Fatal("slow client still connected")
	}
}

func TestShutdownClosesEveryMember(t *testing.T) {
	t.Run("in memory", func(t *testing.T) { shutdownClosesEveryMember(t, "") })
	// With a database the notice goes through the journaled broker, which
	// delivers after the publisher returns: it must still come first.
	t.Run("durable", func(t *testing.T) { shutdownClosesEveryMember(t, filepath.Join(t.TempDir(), "chat.db")) })
}

func shutdownClosesEveryMember(t *testing.T, dataPath string) {
	m := startServer(t, func(c *Config) { c.DataPath = dataPath })
	orig := dialTCP(t, m, "orig")
	orig.loginOriginal("orig")
	ext := dialTCP(t, m, "ext")
	ext.login("ext")
	browser := dialWS(t, m, "browser")
	browser.login("browser")
	lurker := dialTCP(t, m, "lurker") // connected, never logged in
	ext.await("browser's join", func(x msg) bool { return x.str("message") == "browser joined" })
	orig.await("browser's join", func(x msg) bool { return strings.Contains(x.str("message"), "browser(") })

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(waitTime)
		defer cancel()
		closed <- m.Close(ctx)
	}()
	for _, c := range []*client{orig, ext, browser} {
		got, err := c.awaitClosed()
		if len(got) == 0 || !strings.Contains(got[len(got)-1].str("message"), "shutting down") {
			t.Errorf("%s: last messages %v, want the shutdown notice", c.name, got)
		}
		if c == browser && websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("browser closed with %v, want status 1001", err)
		}
	}
	if _, err := lurker.awaitClosed(); err == nil {
		t.Error("lurker still connected")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", m.TCPAddr(), time.Second); err == nil {
		t.Error("still accepting TCP after shutdown")
	}
}
