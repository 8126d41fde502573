package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"chatroom/hub/admission"
	"chatroom/hub/session"
)

// The soak drives a server with a seeded random mix of every request, on
// both fronts and in both wire shapes, with colliding nicknames and room
// names, abrupt disconnects and readers that stall, and then checks
// invariants rather than outputs. It runs for a few seconds in the suite;
// for longer runs:
//
//	CHAT_SOAK=60s CHAT_SOAK_SEED=42 go test -race -run TestSoak ./cmd/chatd
//
// A failure prints the seed. The seed replays the random choices (which
// requests, which names, when to stall or drop); the interleaving is the
// scheduler's, so a replay is likely, not certain, to fail the same way.
const defaultSoak = 3 * time.Second

// soakConfig is one soak run's shape.
type soakConfig struct {
	seed     uint64
	duration time.Duration
	workers  int
	// maxActions bounds each worker's requests whatever the duration.
	maxActions int
	// unseenPerStay is how many of its own joins and leaves a member may
	// not see per stay in a room (see unseenJoin). Default 2.
	unseenPerStay int
	// pace is a pause after each request, for a server that persists
	// every message (SQLite under the race detector is slow: without it,
	// deliveries would fall seconds behind the connections they are for).
	pace time.Duration
}

func soakSettings(t *testing.T) soakConfig {
	cfg := soakConfig{seed: uint64(time.Now().UnixNano()), duration: defaultSoak, workers: 12, maxActions: 4000}
	if v := os.Getenv("CHAT_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CHAT_SOAK=%q: %v", v, err)
		}
		cfg.duration, cfg.maxActions = d, int(d/time.Millisecond)*2
	}
	if v := os.Getenv("CHAT_SOAK_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAT_SOAK_SEED=%q: %v", v, err)
		}
		cfg.seed = seed
	}
	return cfg
}

func TestSoak(t *testing.T) { soak(t, "") }

// TestSoakDurable is the soak with history in a database: every event goes
// through the journal before it is delivered.
func TestSoakDurable(t *testing.T) { soak(t, filepath.Join(t.TempDir(), "chat.db")) }

// TestSoakCluster is the soak over two nodes of a cluster (NATS embedded),
// one keeping its copy of the history in a database, one in memory: each
// connection picks a node, and the invariants hold across them.
func TestSoakCluster(t *testing.T) {
	cfg := soakSettings(t)
	// A node publishes a room's events asynchronously, in order: a member
	// that leaves and joins again several times in a row may be back
	// before its earlier leaves and joins are sequenced, each then unseen
	// by it (and verified against what the others saw).
	cfg.workers, cfg.pace, cfg.unseenPerStay = 8, 2*time.Millisecond, 1000
	t.Logf("soak: seed %d, %s, %d workers, 2 nodes (replay: CHAT_SOAK_SEED=%d CHAT_SOAK=%s)", cfg.seed, cfg.duration, cfg.workers, cfg.seed, cfg.duration)
	errs := &errorLog{}
	n := startNATS(t)
	var nodes []*Main
	for i := range 2 {
		nodes = append(nodes, startNode(t, n, fmt.Sprintf("soak%d", i+1), func(c *Config) {
			if i == 0 {
				c.DataPath = filepath.Join(t.TempDir(), "chat.db")
			}
			c.Logger = slog.New(errs.handler(c.Logger.Handler()))
			c.Admission = admission.Options{MaxConnsPerIP: -1, ConnRatePerIP: -1}
			c.Session = session.Options{RequestRate: -1, QueueMessages: 48, QueueBytes: 48 << 10,
				WriteTimeout: 2 * time.Second}
		}))
	}
	runSoak(t, cfg, nodes, errs, 2+4*3) // the database's pool, as in soak
}

func soak(t *testing.T, dataPath string) {
	cfg := soakSettings(t)
	t.Logf("soak: seed %d, %s, %d workers (replay: CHAT_SOAK_SEED=%d CHAT_SOAK=%s)", cfg.seed, cfg.duration, cfg.workers, cfg.seed, cfg.duration)
	if dataPath != "" {
		cfg.workers, cfg.pace = 8, 2*time.Millisecond
	}
	errs := &errorLog{}
	m := startServer(t, func(c *Config) {
		c.DataPath = dataPath
		c.Logger = slog.New(errs.handler(c.Logger.Handler()))
		c.Admission = admission.Options{MaxConnsPerIP: -1, ConnRatePerIP: -1}
		// Small queues, so that stalled readers really are dropped as slow
		// consumers; no request rate limit, so the run is dense.
		c.Session = session.Options{RequestRate: -1, QueueMessages: 48, QueueBytes: 48 << 10,
			WriteTimeout: 2 * time.Second}
	})
	slackFDs := 2
	if dataPath != "" {
		slackFDs += 4 * 3 // the database's connection pool, opened as needed: a file, its WAL and shared memory each
	}
	runSoak(t, cfg, []*Main{m}, errs, slackFDs)
}

// runSoak runs cfg's workers against the servers (each connection picks
// one), then checks the invariants. More than one server is a cluster
// sharing the rooms.
func runSoak(t *testing.T, cfg soakConfig, servers []*Main, errs *errorLog, slackFDs int) {
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("soak seed %d: "+format, append([]any{cfg.seed}, args...)...)
	}
	baseGoroutines, baseFDs := runtime.NumGoroutine(), openFDs(t)

	var (
		mu    sync.Mutex
		conns []*soakConn
	)
	stop := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	for w := range cfg.workers {
		rng := rand.New(rand.NewPCG(cfg.seed, uint64(w)))
		wg.Go(func() {
			for actions := 0; actions < cfg.maxActions && time.Now().Before(stop); {
				c, err := dialSoak(servers[rng.IntN(len(servers))], w, rng)
				if err != nil {
					t.Errorf("soak seed %d: worker %d: %v", cfg.seed, w, err)
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				actions += c.session(rng, stop, cfg.maxActions-actions, cfg.pace)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		<-c.readerDone
	}
	for _, m := range servers {
		waitFor(t, "the server to tear down the soak's connections", func() bool {
			return m.TCP.Len() == 0 && m.Hub.Len() == 0 && m.Admission.Len() == 0
		})
	}
	var g, fds int
	if !poll(func() bool {
		g, fds = runtime.NumGoroutine(), openFDs(t)
		return g <= baseGoroutines+2 && fds <= baseFDs+slackFDs
	}) {
		fail("after the soak: %d goroutines (was %d), %d open fds (was %d)", g, baseGoroutines, fds, baseFDs)
	}
	if first := errs.first(); first != "" {
		fail("the server logged an error (a panic?): %s", first)
	}

	// The invariants, over everything every connection received.
	var stats soakStats
	rooms := map[string]map[int64]string{} // room -> seq -> what every member saw there
	var unseen []unseenJoin
	for _, c := range conns {
		u, err := c.check(rooms, &stats, cmp.Or(cfg.unseenPerStay, 2))
		if err != nil {
			fail("%s: %v", c.name, err)
		}
		unseen = append(unseen, u...)
	}
	// A gap in a member's events is allowed only for its own join and
	// leave, which it is not sent: where someone else saw that seq, it must
	// be one of those.
	for _, u := range unseen {
		raw, ok := rooms[u.room][u.seq]
		if !ok {
			continue // nobody else was there to see it
		}
		var m msg
		_ = json.Unmarshal([]byte(raw), &m)
		member, _ := m["member"].(map[string]any)
		if (m.str("type") != "join" && m.str("type") != "leave") || member == nil || int64(member["id"].(float64)) != u.self {
			fail("%s: missed %s seq %d while in the room: %.300q", u.conn, u.room, u.seq, raw)
		}
		stats.ownJoins++
	}
	t.Logf("soak: %d connections (%d original shape, %d people at nc), %d objects received, %d room events checked in %d rooms, %d renames, %d own joins or leaves unseen, %d slow consumers dropped, %d refusals",
		len(conns), stats.original, stats.humans, stats.objects, stats.roomEvents, len(rooms), stats.renames, stats.ownJoins, stats.slow, stats.errors)
	t.Logf("soak: refusals by reason: %v", stats.errorTexts)
	if stats.roomEvents == 0 || stats.renames == 0 {
		fail("the soak exercised too little: %+v", stats)
	}
}

// soakConn is one connection of a soak worker: what it sent is random;
// what it received is kept, in order, for the checks.
type soakConn struct {
	name     string
	extended bool
	human    bool // a person at a raw terminal (the TCP front's line mode)
	send     func([]byte) error
	close    func(abrupt bool)
	stall    atomic.Int64 // unix nanos until which the reader does not read
	refused  atomic.Int64 // logins refused (the reader counts them)

	mu         sync.Mutex
	received   [][]byte
	readerDone chan struct{}
}

// Colliding names: nicknames that differ only in case, room names that
// differ in case or by the optional '#': six rooms in all, ten nicknames
// for twelve workers.
var soakNicks = []string{"ann", "Ann", "ANN", "bob", "Bob", "cy", "dee", "Dee", "eve", "fay", "gus", "hal", "ivy", "jo"}
var soakRooms = []string{"go", "#Go", "GO", "rust", "#rust", "chat.x", "lobby", "r1", "#R1", "ops"}
var soakTexts = []string{"hi", "你好，世界", `quote " and \ backslash`, "two\nlines", "<b>not html</b>", strings.Repeat("long ", 700)}

// dialSoak opens a connection to m over TCP or WebSocket, in either shape.
func dialSoak(m *Main, worker int, rng *rand.Rand) (*soakConn, error) {
	c := &soakConn{extended: rng.IntN(4) != 0, readerDone: make(chan struct{})}
	kind := "tcp"
	switch rng.IntN(8) {
	case 0, 1, 2, 3:
		kind = "ws"
	case 4: // a person at nc: lines in, lines out
		c.human, c.extended = true, false
	}
	c.name = fmt.Sprintf("worker %d %s extended=%v human=%v", worker, kind, c.extended, c.human)
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	var read func() ([]byte, error)
	if kind == "tcp" {
		conn, err := net.DialTimeout("tcp", m.TCPAddr(), waitTime)
		if err != nil {
			return nil, err
		}
		r := bufio.NewReader(conn)
		read = func() ([]byte, error) { return r.ReadBytes('\n') }
		c.send = func(b []byte) error {
			conn.SetWriteDeadline(time.Now().Add(waitTime))
			_, err := conn.Write(b)
			return err
		}
		c.close = func(abrupt bool) {
			if abrupt {
				conn.(*net.TCPConn).SetLinger(0) // a reset, not a FIN
			}
			conn.Close()
		}
	} else {
		ws, _, err := websocket.Dial(ctx, "ws://"+m.HTTPAddr()+"/ws", nil)
		if err != nil {
			return nil, err
		}
		ws.SetReadLimit(16 << 20)
		read = func() ([]byte, error) {
			_, b, err := ws.Read(context.Background())
			return b, err
		}
		c.send = func(b []byte) error {
			ctx, cancel := context.WithTimeout(context.Background(), waitTime)
			defer cancel()
			return ws.Write(ctx, websocket.MessageText, b)
		}
		c.close = func(abrupt bool) {
			if abrupt {
				ws.CloseNow()
			} else {
				ws.Close(websocket.StatusNormalClosure, "bye")
			}
		}
	}
	go c.readAll(read)
	return c, nil
}

// readAll keeps everything the server sends until the connection ends,
// pausing while the connection is stalled (a slow reader).
func (c *soakConn) readAll(read func() ([]byte, error)) {
	defer close(c.readerDone)
	for {
		if until := time.Unix(0, c.stall.Load()); time.Now().Before(until) {
			time.Sleep(time.Until(until)) // load shaping: a reader that falls behind
		}
		b, err := read()
		if err != nil {
			return
		}
		if bytes.Contains(b, []byte(`"status":"error","id":0`)) || bytes.Contains(b, []byte("* login refused")) {
			c.refused.Add(1)
		}
		if !c.human {
			b = bytes.TrimSpace(b) // TCP ends each object with a newline, WebSocket does not
		}
		c.mu.Lock()
		c.received = append(c.received, b)
		c.mu.Unlock()
	}
}

// session logs in and sends random requests until stop, at most budget of
// them or until it decides to disconnect; it returns how many it sent.
func (c *soakConn) session(rng *rand.Rand, stop time.Time, budget int, pace time.Duration) int {
	defer c.close(rng.IntN(2) == 0)
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	login := func(nick string) []byte {
		if c.human {
			return []byte("login " + nick + "\r\n")
		}
		if c.extended {
			return fmt.Appendf(nil, `{"type":"login","nickname":%s,"protocol":1}`, str(nick))
		}
		// As the original client writes it: no newline, spaces after colons.
		return fmt.Appendf(nil, `{"type": "login", "nickname": %s}`, str(nick))
	}
	if c.send(login(pick(soakNicks))) != nil {
		return 1
	}
	sent := 1
	retried := int64(0)
	for ; sent < budget && time.Now().Before(stop); sent++ {
		var req string
		room := pick(soakRooms)
		if r := c.refused.Load(); r > retried && r <= 3 {
			// Its nickname was taken: try another, the third time one
			// nobody else uses (a refused login keeps the connection).
			retried = r
			nick := pick(soakNicks)
			if r == 3 {
				nick = fmt.Sprintf("w%d", rng.Uint32())
			}
			if c.send(login(nick)) != nil {
				return sent
			}
			continue
		}
		if c.human {
			if rng.IntN(50) == 0 {
				return sent
			}
			line := pick([]string{"hello from a terminal", "send said with send", "/join " + room, "/leave", "/switch " + room,
				"/msg " + pick(soakNicks) + " psst", "/nick " + pick(soakNicks), "/who", "/rooms", "/search hi", "/help", "/nope",
				"\x1b[31mred\x07", "bad \xc3\x28 utf8", "\xff\xfb\x01", pick(soakTexts)})
			if c.send([]byte(strings.ReplaceAll(line, "\n", " ")+pick([]string{"\r\n", "\n"}))) != nil {
				return sent
			}
			time.Sleep(pace)
			continue
		}
		switch n := rng.IntN(100); {
		case n < 2: // leave without a word: a reset or a plain close
			return sent
		case n < 6: // stall reading for a while: may be dropped as a slow consumer
			c.stall.Store(time.Now().Add(time.Duration(50+rng.IntN(400)) * time.Millisecond).UnixNano())
			continue
		case n < 9: // hostile bytes
			req = pick([]string{`{"type":`, `[1,2]`, `{"type":"nope"}`, "{\"type\":\"broadcast\",\"message\":\"\xff\xfe\"}", `{"type":"broadcast","sender_id":999999,"message":"spoof"}`})
		case n < 12: // log in again, maybe under another name: refused, or the first login if that was
			req = string(login(pick(soakNicks)))
		case !c.extended || n < 40:
			req = fmt.Sprintf(`{"type":"broadcast","room":%s,"message":%s}`, str(room), str(pick(soakTexts)))
			if !c.extended || rng.IntN(4) == 0 {
				req = fmt.Sprintf(`{"type": "broadcast", "message": %s}`, str(pick(soakTexts)))
			}
		case n < 52:
			req = fmt.Sprintf(`{"type":"join","room":%s}`, str(room))
		case n < 60:
			req = fmt.Sprintf(`{"type":"leave","room":%s}`, str(room))
		case n < 68:
			req = fmt.Sprintf(`{"type":"nick","nickname":%s}`, str(pick(soakNicks)))
		case n < 78:
			req = fmt.Sprintf(`{"type":"private","to":%s,"message":%s}`, str(pick(soakNicks)), str(pick(soakTexts)))
		case n < 84:
			req = fmt.Sprintf(`{"type":"history","room":%s,"before":%d,"limit":%d}`, str(room), rng.IntN(50), rng.IntN(60))
		case n < 90:
			req = fmt.Sprintf(`{"type":"typing","room":%s}`, str(room))
		case n < 95:
			req = fmt.Sprintf(`{"type":"members","room":%s}`, str(room))
		default:
			req = `{"type":"rooms"}`
		}
		if c.extended || rng.IntN(2) == 0 {
			req += "\n"
		}
		if c.send([]byte(req)) != nil {
			return sent // dropped by the server
		}
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond) // load shaping, not synchronisation
		}
		time.Sleep(pace)
	}
	return sent
}

type soakStats struct {
	objects, roomEvents, renames, slow, errors, original, ownJoins, humans int
	errorTexts                                                             map[string]int // refusals by reason
}

// unseenJoin is a seq a member did not get in a room while in it, which
// must be its own join or leave, which are not sent to it. A member is put
// in a room (and gets "joined") before its join is sequenced, so another
// event may come in between; and with a journaled broker, delivery follows
// the write, so a member that leaves and joins again at once may be back
// before its leave is delivered. So at most two per stay in a room (in a
// cluster more: soakConfig.unseenPerStay); each is checked against what
// the others saw.
type unseenJoin struct {
	conn, room string
	seq, self  int64
}

// check verifies what one connection received:
//   - every object is valid JSON; an original-shape client gets only what
//     the original client can parse (one object under 1024 bytes each, with
//     its three keys, or the login reply);
//   - in each room, between joining it ("joined") and leaving it ("left" or
//     the end of the connection), the room's sequenced events arrive with
//     consecutive seq numbers: nothing skipped (a rename in the room, say,
//     reaches every member), nothing repeated, nothing reordered; and the
//     first one comes after the history that "joined" carried;
//   - nothing about a room arrives while not in it;
//   - every member that saw a room's seq n saw the same event there.
func (c *soakConn) check(rooms map[string]map[int64]string, stats *soakStats, unseenPerStay int) ([]unseenJoin, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	type episode struct {
		in   bool
		last int64 // last seq seen in the room (history or live)
		live bool  // a live event has been seen this episode
		gaps int   // unseen seqs allowed (its own join and leave) used
	}
	eps := map[string]*episode{}
	var self int64
	var unseen []unseenJoin
	if c.human {
		stats.humans++
		for _, raw := range c.received {
			stats.objects++
			switch {
			case !bytes.HasSuffix(raw, []byte("\r\n")):
				return nil, fmt.Errorf("a line without CRLF: %q", raw)
			case bytes.ContainsAny(raw, "\x1b\x07"):
				return nil, fmt.Errorf("a raw control character reached the terminal: %q", raw)
			case !utf8.Valid(raw):
				return nil, fmt.Errorf("invalid UTF-8 to the terminal: %q", raw)
			}
		}
		return nil, nil
	}
	if !c.extended {
		stats.original++
	}
	for i, raw := range c.received {
		stats.objects++
		var m msg
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("object %d is not JSON: %q", i, raw)
		}
		if !c.extended {
			if len(raw) > 1024 {
				return nil, fmt.Errorf("original-shape push of %d bytes: %.80q", len(raw), raw)
			}
			_, hasStatus := m["status"]
			_, hasSender := m["sender_id"]
			_, hasMessage := m["message"]
			if !hasStatus && !(hasSender && hasMessage && len(m) == 3) {
				return nil, fmt.Errorf("original-shape client got %q", raw)
			}
			continue
		}
		typ, room, seq := m.str("type"), m.str("room"), m.num("seq")
		switch typ {
		case "joined":
			if ep := eps[room]; ep != nil && ep.in {
				return nil, fmt.Errorf("joined %s twice without leaving", room)
			}
			ep := &episode{in: true}
			hist, _ := m["history"].([]any)
			for _, h := range hist {
				s := msg(h.(map[string]any)).num("seq")
				if s <= ep.last {
					return nil, fmt.Errorf("%s: history seq %d after %d", room, s, ep.last)
				}
				ep.last = s
			}
			eps[room] = ep
		case "left":
			if ep := eps[room]; ep == nil || !ep.in {
				return nil, fmt.Errorf("left %s without being in it", room)
			}
			eps[room].in = false
		case "error":
			stats.errors++
			if stats.errorTexts == nil {
				stats.errorTexts = map[string]int{}
			}
			e := m.str("error")
			if i := strings.IndexAny(e, ":\""); i > 0 {
				e = e[:i]
			}
			stats.errorTexts[e]++
			if strings.Contains(m.str("error"), "slow consumer") {
				stats.slow++
			}
		case "message", "join", "leave", "rename":
			ep := eps[room]
			if ep == nil || !ep.in {
				return nil, fmt.Errorf("got %s seq %d of %s, a room it is not in: %.200q", typ, seq, room, raw)
			}
			switch {
			case seq <= ep.last:
				return nil, fmt.Errorf("%s: seq %d after %d (repeated or reordered): %.200q", room, seq, ep.last, raw)
			case ep.live && seq > ep.last+1 && ep.gaps+int(seq-ep.last-1) <= unseenPerStay:
				for missing := ep.last + 1; missing < seq; missing++ {
					ep.gaps++
					unseen = append(unseen, unseenJoin{conn: c.name, room: room, seq: missing, self: self})
				}
			case ep.live && seq != ep.last+1:
				return nil, fmt.Errorf("%s: seq %d after %d: missed %d events while in the room", room, seq, ep.last, seq-ep.last-1)
			}
			ep.last, ep.live = seq, true
			stats.roomEvents++
			if typ == "rename" {
				stats.renames++
			}
			// What everyone must agree on: the event, less its per-recipient
			// nothing (all fields are shared).
			if rooms[room] == nil {
				rooms[room] = map[int64]string{}
			}
			if seen, ok := rooms[room][seq]; !ok {
				rooms[room][seq] = string(raw)
			} else if seen != string(raw) {
				return nil, fmt.Errorf("%s seq %d differs between members:\n%.300q\n%.300q", room, seq, seen, raw)
			}
		case "typing":
			if ep := eps[room]; ep == nil || !ep.in {
				return nil, fmt.Errorf("typing in %s, a room it is not in", room)
			}
		case "login":
			if m.str("status") == "ok" {
				self = m.num("id")
			}
		case "private", "history", "rooms", "members", "nick", "notice":
		default:
			return nil, fmt.Errorf("unknown object %q", raw)
		}
	}
	return unseen, nil
}

// errorLog records what the server logs at level Error (a recovered panic,
// for one), passing every record on to next.
type errorLog struct {
	mu     sync.Mutex
	errors []string
}

func (e *errorLog) first() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errors) == 0 {
		return ""
	}
	return e.errors[0]
}

func (e *errorLog) handler(next slog.Handler) slog.Handler { return errorHandler{next, e} }

type errorHandler struct {
	slog.Handler
	log *errorLog
}

func (h errorHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		h.log.mu.Lock()
		h.log.errors = append(h.log.errors, b.String())
		h.log.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h errorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.Handler.Enabled(ctx, l)
}

func (h errorHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return errorHandler{h.Handler.WithAttrs(as), h.log}
}

func (h errorHandler) WithGroup(name string) slog.Handler {
	return errorHandler{h.Handler.WithGroup(name), h.log}
}
