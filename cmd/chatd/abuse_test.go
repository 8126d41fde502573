package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"chatroom/hub"
	"chatroom/hub/admission"
)

// room is a server with a witness that joined before any abuse. verify
// proves afterwards that the server still works for fresh clients and that
// the witness lost nothing and saw nothing the abuser sent.
type room struct {
	t       *testing.T
	m       *Main
	witness *client
	sender  *client
}

func newRoom(t *testing.T, mutate ...func(*Config)) *room {
	t.Helper()
	m := startServer(t, mutate...)
	r := &room{t: t, m: m, witness: dialTCP(t, m, "witness"), sender: dialTCP(t, m, "sender")}
	r.witness.login("witness")
	r.sender.login("sender")
	r.sender.say("before")
	r.witness.awaitMessage("before")
	return r
}

func (r *room) verify() {
	r.t.Helper()
	a, b := dialTCP(r.t, r.m, "fresh-a"), dialWS(r.t, r.m, "fresh-b")
	a.login("fresh-a")
	b.login("fresh-b")
	r.sender.say("after")
	r.sender.awaitMessage("after") // sequenced before "fresh" is sent
	a.say("fresh")
	b.awaitMessage("after")
	b.awaitMessage("fresh")
	// The witness's chat messages since "before" are exactly these two.
	next := func() string {
		return r.witness.await("a chat message", func(x msg) bool { return x.str("type") == "message" }).str("message")
	}
	if got := []string{next(), next()}; got[0] != "after" || got[1] != "fresh" {
		r.t.Fatalf("witness saw %q after the abuse, want [after fresh]", got)
	}
}

func TestOversizeRequestsCostNoMoreThanTheLimit(t *testing.T) {
	r := newRoom(t)

	// A 100 MiB line with no newline: the server reads 64 KiB, says why and closes.
	big := dialTCP(t, r.m, "big")
	big.login("big")
	go func() {
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		big.send(`{"type":"broadcast","message":"`)
		for range 100 {
			if !big.trySend(chunk) {
				return // closed by the server, as it should be
			}
		}
	}()
	got, _ := big.awaitClosed()
	if len(got) == 0 || !strings.Contains(got[len(got)-1].str("error"), "request too large") {
		t.Fatalf("oversize TCP client got %v, want a 'request too large' error before the close", got)
	}

	// The same over WebSocket closes with 1009.
	ws := dialWS(t, r.m, "ws")
	ws.login("ws")
	ws.send(`{"type":"broadcast","message":"` + strings.Repeat("y", 70<<10) + `"}`)
	if _, err := ws.awaitClosed(); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("oversize WebSocket message: %v, want status 1009", err)
	}

	// A message over 4 KiB inside a small request is refused; the connection stays.
	long := dialTCP(t, r.m, "long")
	long.login("long")
	long.say(strings.Repeat("z", 4097))
	if e := long.await("error", func(x msg) bool { return x.str("type") == "error" }); !strings.Contains(e.str("error"), "longer than 4096") {
		t.Fatalf("long message: %v", e)
	}
	long.say("short")
	long.awaitMessage("short")
	r.witness.awaitMessage("short")
	r.verify()
}

func TestFloodIsRefusedThenDisconnected(t *testing.T) {
	r := newRoom(t, func(c *Config) {
		c.Session.RequestRate, c.Session.RequestBurst, c.Session.RefusalBurst = 5, 10, 10
	})
	flooder := dialTCP(t, r.m, "flooder")
	flooder.login("flooder")
	for i := range 200 {
		if !flooder.trySend([]byte(fmt.Sprintf(`{"type":"broadcast","message":"flood %d"}`, i))) {
			break
		}
	}
	accepted, limited := 0, 0
	got, _ := flooder.awaitClosed()
	for _, x := range got {
		switch {
		case x.str("type") == "message":
			accepted++
		case strings.Contains(x.str("error"), "rate limited"):
			limited++
		}
	}
	last := got[len(got)-1]
	// The burst of 10 covers the login and the first messages.
	if accepted < 9 || accepted > 20 || limited == 0 || !strings.Contains(last.str("error"), "too many refused requests") {
		t.Fatalf("accepted %d, rate-limited %d, last %v: want the burst accepted, the rest refused, then a disconnect", accepted, limited, last)
	}
	// The witness got exactly the accepted messages, in order, then the leave.
	relayed := 0
	for {
		x := r.witness.next()
		if x.str("type") == "message" {
			if want := fmt.Sprintf("flood %d", relayed); x.str("message") != want {
				t.Fatalf("witness got %q, want %q", x.str("message"), want)
			}
			relayed++
		}
		if x.str("type") == "leave" {
			if !strings.Contains(x.str("reason"), "too many refused") {
				t.Fatalf("leave %v", x)
			}
			break
		}
	}
	if relayed != accepted {
		t.Fatalf("witness got %d flood messages, the flooder had %d accepted", relayed, accepted)
	}
	r.verify()
}

func TestConnectionLimits(t *testing.T) {
	r := newRoom(t, func(c *Config) {
		c.Admission = admission.Options{MaxConnsPerIP: 4, ConnRatePerIP: -1}
	})
	// witness and sender hold 2 of the 4; two more fit, the fifth does not.
	third := dialTCP(t, r.m, "third")
	third.login("third")
	fourth := dialWS(t, r.m, "fourth")
	fourth.login("fourth")
	fifth := dialTCP(t, r.m, "fifth")
	got, _ := fifth.awaitClosed()
	if len(got) != 1 || got[0].num("id") != 0 || !strings.Contains(got[0].str("error"), "too many connections from your address") {
		t.Fatalf("fifth connection got %v, want a refusal", got)
	}
	ctx, cancel := contextWithTimeout(waitTime)
	defer cancel()
	if _, resp, err := websocket.Dial(ctx, "ws://"+r.m.HTTPAddr()+"/ws", nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fifth WebSocket: %v %v, want 429", err, resp)
	}
	// Places free up as clients leave: verify needs two.
	third.close()
	fourth.close()
	for left := map[string]bool{}; len(left) < 2; {
		x := r.witness.await("a leave", func(x msg) bool { return x.str("type") == "leave" })
		left[x.str("message")] = true
	}
	waitFor(t, "places to free up", func() bool { return r.m.Admission.Len() == 2 })
	r.verify()
}

func TestNewConnectionRatePerIP(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Admission = admission.Options{ConnRatePerIP: 0.001, ConnBurst: 3}
	})
	for i := range 3 {
		dialTCP(t, m, fmt.Sprint("c", i)).login(fmt.Sprint("c", i))
	}
	got, _ := dialTCP(t, m, "fourth").awaitClosed()
	if len(got) != 1 || !strings.Contains(got[0].str("error"), "connecting too fast") {
		t.Fatalf("fourth rapid connection got %v", got)
	}
}

func TestLoginDeadline(t *testing.T) {
	r := newRoom(t, func(c *Config) { c.Session.LoginTimeout = 200 * time.Millisecond })
	idle := dialTCP(t, r.m, "idle")
	got, _ := idle.awaitClosed()
	if len(got) != 1 || !strings.Contains(got[0].str("message"), "did not log in within 200ms") {
		t.Fatalf("idle connection got %v", got)
	}
	r.verify() // the witness and sender logged in in time and are still here
}

func TestDeadWebSocketPeerIsReaped(t *testing.T) {
	r := newRoom(t, func(c *Config) { c.PingInterval = 100 * time.Millisecond })
	// A client that stops reading never answers pings (pongs are read by the
	// reader), like a peer that vanished.
	ctx, cancel := contextWithTimeout(waitTime)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+r.m.HTTPAddr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"login","nickname":"ghost","protocol":1}`)); err != nil {
		t.Fatal(err)
	}
	r.witness.await("ghost's join", func(x msg) bool { return x.str("message") == "ghost joined" })
	r.witness.await("ghost's leave", func(x msg) bool { return x.str("type") == "leave" && strings.HasPrefix(x.str("message"), "ghost left") })
	r.verify()
}

func TestForeignOriginCannotOpenAWebSocket(t *testing.T) {
	m := startServer(t, func(c *Config) { c.AllowedOrigins = []string{"friend.example"} })
	ctx, cancel := contextWithTimeout(waitTime)
	defer cancel()
	dial := func(origin string) (*http.Response, error) {
		h := http.Header{}
		h.Set("Origin", origin)
		c, resp, err := websocket.Dial(ctx, "ws://"+m.HTTPAddr()+"/ws", &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			c.CloseNow()
		}
		return resp, err
	}
	if resp, err := dial("http://evil.example"); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v, want 403", err)
	}
	if _, err := dial("http://friend.example"); err != nil {
		t.Fatalf("allow-listed origin refused: %v", err)
	}
	if _, err := dial("http://" + m.HTTPAddr()); err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
}

func TestTLSOnBothFronts(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	m := startServer(t, func(c *Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	conn, err := tls.Dial("tcp", m.TCPAddr(), tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitTime))
	io.WriteString(conn, `{"type":"login","nickname":"secure"}`)
	reply := make([]byte, 64)
	n, err := conn.Read(reply)
	if err != nil || !strings.Contains(string(reply[:n]), `"status":"ok"`) {
		t.Fatalf("TLS login: %q %v", reply[:n], err)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	ctx, cancel := contextWithTimeout(waitTime)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+m.HTTPAddr()+"/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte(`{"type":"login","nickname":"browser","protocol":1}`))
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"status":"ok"`) {
		t.Fatalf("wss login: %s %v", data, err)
	}
	resp, err := client.Get("https://" + m.HTTPAddr() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("https healthz: %v", err)
	}
	resp.Body.Close()
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	r := newRoom(t, func(c *Config) { c.DebugAddr = "127.0.0.1:0" })
	get := func(path string) (int, string) {
		addr := r.m.HTTPAddr()
		if path == "/metrics" {
			addr = r.m.DebugAddr() // the operator's address, not the public one
		}
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	if code, _ := get("/metrics?public"); code != http.StatusNotFound {
		t.Fatalf("/metrics on the public address: %d, want 404 (only with -public-metrics)", code)
	}
	r.sender.send(`{"type":"dance"}`)
	r.sender.await("error", func(x msg) bool { return x.str("type") == "error" })
	_, body := get("/metrics")
	for _, want := range []string{
		`chat_connections{front="tcp"} 2`,
		`chat_logins_total 2`,
		`chat_members 2`,
		`chat_messages_in_total 1`,
		`chat_refusals_total{reason="unknown_type"} 1`,
		`chat_fanout_seconds_count`,
		`chat_send_queue_depth_bucket`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestChurnLeavesNothingBehind(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Admission = admission.Options{MaxConnsPerIP: -1, ConnRatePerIP: -1}
	})
	baseGoroutines, baseFDs := runtime.NumGoroutine(), openFDs(t)
	const workers, perWorker = 16, 125 // 2000 connect/login/send/disconnect cycles
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if err := oneCycle(m, fmt.Sprintf("churn-%d-%d", w, i)); err != nil {
					if failures.Add(1) == 1 {
						t.Errorf("cycle: %v", err)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "the server to tear down the last connections", func() bool {
		return m.TCP.Len() == 0 && m.Hub.Len() == 0 && m.Admission.Len() == 0
	})
	var g, fds int
	if !poll(func() bool {
		g, fds = runtime.NumGoroutine(), openFDs(t)
		return g <= baseGoroutines+2 && fds <= baseFDs+2
	}) {
		t.Fatalf("after churn: %d goroutines (was %d), %d open fds (was %d)", g, baseGoroutines, fds, baseFDs)
	}
}

// oneCycle connects, logs in, sends, reads its own echo and disconnects.
func oneCycle(m *Main, nick string) error {
	c, err := net.DialTimeout("tcp", m.TCPAddr(), waitTime)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTime))
	fmt.Fprintf(c, `{"type":"login","nickname":%q,"protocol":1}`+"\n"+`{"type":"broadcast","message":"bye from %s"}`+"\n", nick, nick)
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for !bytes.Contains(buf, []byte("bye from "+nick)) {
		n, err := c.Read(tmp)
		if err != nil {
			return fmt.Errorf("%s: %w (read %q)", nick, err, buf)
		}
		buf = append(buf, tmp[:n]...)
	}
	return nil
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// TestIdleHTTPConnectionsAreBoundedAndReaped: one address opening hundreds
// of keep-alive HTTP connections and leaving them idle (issue 15) gets no
// more than its per-IP share of the server's descriptors, everyone else
// carries on meanwhile, and idle connections are closed after the idle
// timeout.
func TestIdleHTTPConnectionsAreBoundedAndReaped(t *testing.T) {
	m := startServer(t, func(c *Config) { c.HTTPIdleTimeout = 2 * time.Second })
	baseFDs := openFDs(t)
	const attempts = 300
	var attacker []net.Conn
	defer func() {
		for _, c := range attacker {
			c.Close()
		}
	}()
	answered := map[int]int{}
	for range attempts {
		c, err := net.DialTimeout("tcp", m.HTTPAddr(), waitTime)
		if err != nil {
			t.Fatal(err)
		}
		attacker = append(attacker, c)
		c.SetDeadline(time.Now().Add(waitTime))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: chat\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", len(attacker), err)
		}
		resp.Body.Close()
		answered[resp.StatusCode]++
	}
	held := m.Admission.Len()
	serverFDs := openFDs(t) - baseFDs - attempts // less the attacker's own sockets
	t.Logf("%d idle connections tried: answers %v; the server holds %d admitted connections, %d descriptors", attempts, answered, held, serverFDs)
	if held > admission.DefaultMaxConnsPerIP || serverFDs > admission.DefaultMaxConnsPerIP+5 {
		t.Fatalf("one address holds %d connections and %d of the server's descriptors, want at most %d", held, serverFDs, admission.DefaultMaxConnsPerIP)
	}
	if answered[http.StatusTooManyRequests] == 0 {
		t.Fatalf("no connection was refused with 429: %v", answered)
	}

	// Another address chats meanwhile, on both fronts.
	tcp, ws := dialTCPFrom(t, m, "127.0.0.2", "other-tcp"), dialWSFrom(t, m, "127.0.0.2", "other-ws")
	tcp.login("other-tcp")
	ws.login("other-ws")
	tcp.say("still here")
	ws.awaitMessage("still here")

	// The idle ones are closed after the idle timeout: only the two chat
	// connections remain.
	waitFor(t, "idle HTTP connections to be closed", func() bool { return m.Admission.Len() == 2 })
	buf := make([]byte, 1)
	for i, c := range attacker {
		c.SetReadDeadline(time.Now().Add(waitTime))
		if _, err := c.Read(buf); err == nil {
			t.Fatalf("attacker connection %d still open and sent data", i)
		}
	}
}

// dialTCPFrom is dialTCP from another loopback address (another client IP).
func dialTCPFrom(t *testing.T, m *Main, ip, name string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTime}
	c, err := d.Dial("tcp", m.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	return tcpClient(t, c, name)
}

// dialWSFrom is dialWS from another loopback address.
func dialWSFrom(t *testing.T, m *Main, ip, name string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTime}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	return wsClient(t, m, name, &websocket.DialOptions{HTTPClient: hc})
}

// TestOneAddressCannotTakeEveryRoom: one address may have created only so
// many rooms that exist, and rooms nobody is in make way for new ones
// (issue 15: eleven connections from one address took all 500 rooms until
// restart).
func TestOneAddressCannotTakeEveryRoom(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.MaxRooms = 30
		c.Session.RequestRate = -1
	})
	attacker, second := dialTCP(t, m, "attacker"), dialTCP(t, m, "attacker-2")
	attacker.login("attacker")
	second.login("attacker-2")
	for i := range hub.DefaultMaxRoomsPerPeer {
		attacker.request(`{"type":"join","room":"a%d"}`, i)
		attacker.awaitType("joined")
	}
	attacker.request(`{"type":"join","room":"one-more"}`)
	attacker.awaitError("you have created 20")
	second.request(`{"type":"join","room":"from-the-same-address"}`)
	second.awaitError("you have created 20")

	// Another address creates rooms: while the attacker's have members,
	// up to the server's limit (lobby + 20 + 9).
	other := dialTCPFrom(t, m, "127.0.0.2", "other")
	other.login("other")
	for i := range 9 {
		other.request(`{"type":"join","room":"b%d"}`, i)
		other.awaitType("joined")
	}
	other.request(`{"type":"join","room":"b9"}`)
	other.awaitError("all in use")
	// Once the attacker leaves its rooms, they make way.
	for i := range hub.DefaultMaxRoomsPerPeer {
		attacker.request(`{"type":"leave","room":"a%d"}`, i)
		attacker.awaitType("left")
	}
	for i := 9; i < 20; i++ {
		other.request(`{"type":"join","room":"b%d"}`, i)
		other.awaitType("joined")
	}
	other.request(`{"type":"rooms"}`)
	rooms := other.awaitType("rooms")["rooms"].([]any)
	left := 0
	for _, r := range rooms {
		if strings.HasPrefix(msg(r.(map[string]any)).str("room"), "a") {
			left++
		}
	}
	if len(rooms) != 30 || left != 9 {
		t.Fatalf("%d rooms, %d of them the attacker's, want 30 and 9 (11 empty ones removed for b9-b19)", len(rooms), left)
	}
}

// TestPrivateFloodRefusesSendersNotTheRecipient: senders within the rate
// limit flooding one member, who does not read for a while, with private
// messages (issue 15) used to get that member dropped as a slow consumer.
// Now, once its queue is half full, the senders are refused; the member
// stays, and then receives every private message that was accepted.
func TestPrivateFloodRefusesSendersNotTheRecipient(t *testing.T) {
	r := newRoom(t, func(c *Config) {
		c.Session.QueueBytes = 256 << 10
		c.Session.RequestRate = -1 // the flood stays within any rate limit: the point is its volume
		c.Session.WriteTimeout = 30 * time.Second
		c.Admission = admission.Options{ConnRatePerIP: -1}
	})
	victim := dialTCP(t, r.m, "victim")
	victim.login("victim")
	text := strings.Repeat("p", 4000)
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 10 {
		s := dialTCP(t, r.m, fmt.Sprint("flooder", i))
		s.login(fmt.Sprint("flooder", i))
		wg.Go(func() {
			for range 400 {
				s.request(`{"type":"private","to":"victim","message":%q}`, text)
				reply := s.await("echo or refusal", func(m msg) bool { return m.str("type") == "private" || m.str("type") == "error" })
				if reply.str("type") == "error" {
					if !strings.Contains(reply.str("error"), "not keeping up") {
						t.Errorf("refused with %q", reply.str("error"))
					}
					refused.Add(1)
					return // a polite sender backs off
				}
				accepted.Add(1)
			}
		})
	}
	wg.Wait() // the victim has read nothing yet
	t.Logf("%d private messages accepted, senders refused %d times", accepted.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Fatalf("no sender was refused: the flood (%d messages) never filled the victim's queue", accepted.Load())
	}
	for i := range accepted.Load() {
		victim.await(fmt.Sprintf("private message %d", i), func(m msg) bool {
			if m.str("type") == "error" {
				t.Fatalf("victim dropped: %v", m)
			}
			return m.str("type") == "private"
		})
	}
	victim.say("I am still here")
	r.witness.awaitMessage("I am still here")
}

// TestLookalikeNicknamesAndRoomsOverTheWire: issue 15's look-alikes, over
// real sockets (the full table is hub's TestLookalikeNamesAreRefused).
func TestLookalikeNicknamesAndRoomsOverTheWire(t *testing.T) {
	r := newRoom(t)
	for _, nick := range []string{"w\u0456tness", "ｗｉｔｎｅｓｓ", "\u0405ystem", "\u3164"} {
		c := dialWS(t, r.m, "lookalike")
		c.send(fmt.Sprintf(`{"type":"login","nickname":%q,"protocol":1}`, nick))
		if reply := c.awaitType("login"); reply.str("status") != "error" {
			t.Errorf("login as %q: %v, want refused", nick, reply)
		}
	}
	r.sender.request(`{"type":"join","room":"l\u043ebby"}`)
	r.sender.awaitError("looks like #lobby")
	r.verify()
}
