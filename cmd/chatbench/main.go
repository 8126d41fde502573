// Command chatbench is the project's load tool. It opens N clients to a
// chatd over TCP or WebSocket (or a mix), logs them into the lobby, has S of
// them send for a duration (at a total rate, or as fast as a cap on messages
// in flight allows), and reports connect and login time, deliveries per
// second (messages received, summed over clients), end-to-end latency (the
// send time travels in the message; sender and receivers share this
// process's clock), messages lost or out of order, and, given the server's
// pid, its RSS per idle connection and its CPU per delivery next to the load
// tool's own. It prints a table for people and one JSON line for tools.
//
// Traffic goes only to the addresses given (loopback), is bounded by
// -duration and stops by itself. See README for the scenarios.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"chatroom/hub/wire/proto"
)

type config struct {
	tcpAddrs     []string // client i dials tcpAddrs[i%len] (several: the nodes of a cluster)
	wsURLs       []string
	namePrefix   string // nicknames are namePrefix + i: unique per process in a cluster run
	probeListen  bool   // idle run: wait for another process's probe instead of sending one
	clients      int
	wsClients    int
	senders      int
	original     bool
	rate         float64
	inflight     int
	duration     time.Duration
	size         int
	pids         []int // chatd processes whose RSS and CPU are summed
	sources      int
	settle       time.Duration
	gcURL        string
	goReaders    bool
	pollers      int
	wsLibrary    bool
	quickAcks    bool
	pollInterval time.Duration
}

func main() {
	var cfg config
	tcpAddrs := flag.String("tcp", "127.0.0.1:8000", "chatd TCP address; several, comma-separated (the nodes of a cluster): client i connects to the i-th modulo their number")
	wsURLs := flag.String("ws", "ws://127.0.0.1:8080/ws", "chatd WebSocket URL; several, comma-separated, as -tcp")
	flag.StringVar(&cfg.namePrefix, "name-prefix", "bench", "nickname prefix (client i is PREFIXi): give each chatbench process its own when several share a cluster")
	flag.BoolVar(&cfg.probeListen, "probe-listen", false, "idle run: send no probe, wait (up to 2 minutes) for each client to receive one sent by another chatbench process")
	flag.IntVar(&cfg.clients, "clients", 100, "clients to connect")
	flag.IntVar(&cfg.wsClients, "ws-clients", 0, "how many of the clients use WebSocket (the rest TCP); -1: all")
	flag.IntVar(&cfg.senders, "senders", 10, "clients that send (0: idle run: connect, measure memory, check one delivery reaches all)")
	flag.BoolVar(&cfg.original, "original", false, "speak the original protocol (one object per write, no echo) instead of the extended one")
	flag.Float64Var(&cfg.rate, "rate", 0, "total messages per second over all senders (0: as fast as -inflight allows)")
	flag.IntVar(&cfg.inflight, "inflight", 256, "max rate: how far (in messages) the slowest client may fall behind before senders wait; keep it below chatd's -queue-messages")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long senders send")
	flag.IntVar(&cfg.size, "size", 64, "message text size in bytes")
	pids := flag.String("pid", "", "chatd's pid, to report its RSS and CPU; several, comma-separated, are summed (a cluster's nodes)")
	flag.IntVar(&cfg.sources, "sources", 1, "loopback source addresses to spread connections over (127.0.0.1 .. 127.0.0.N)")
	flag.DurationVar(&cfg.settle, "settle", time.Second, "idle time that counts as settled after connecting")
	flag.StringVar(&cfg.gcURL, "gc-url", "", "URL to GET before measuring idle RSS, to make the server collect the connect phase's garbage and return it to the OS (chatd -debug-addr A: http://A/debug/freeosmemory)")
	flag.BoolVar(&cfg.goReaders, "goroutine-readers", false, "read each client on a goroutine of its own rather than through epoll (Linux), as a naive load generator would")
	flag.IntVar(&cfg.pollers, "pollers", runtime.GOMAXPROCS(0), "epoll reader goroutines for the clients")
	flag.DurationVar(&cfg.pollInterval, "poll-interval", time.Millisecond, "how often an epoll reader with nothing to read looks again (0: block in epoll_wait, to be woken by every write)")
	flag.BoolVar(&cfg.wsLibrary, "ws-library", false, "use the WebSocket library's client (a goroutine and a Reader per message) instead of the tool's own frame reader")
	flag.BoolVar(&cfg.quickAcks, "quick-acks", false, "let the epoll readers' sockets acknowledge every push at once (the kernel's default) instead of delaying acknowledgements as a receive-only client may")
	cpuProfile := flag.String("cpuprofile", "", "write the load tool's own CPU profile to this file (to see whether it is the bottleneck)")
	flag.Parse()
	cfg.tcpAddrs, cfg.wsURLs = splitList(*tcpAddrs), splitList(*wsURLs)
	for _, p := range splitList(*pids) {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			fmt.Fprintf(os.Stderr, "chatbench: -pid %q: not a pid\n", p)
			os.Exit(2)
		}
		cfg.pids = append(cfg.pids, pid)
	}
	if len(cfg.tcpAddrs) == 0 || len(cfg.wsURLs) == 0 {
		fmt.Fprintln(os.Stderr, "chatbench: -tcp and -ws need an address")
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "chatbench: cpuprofile:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.wsClients < 0 || cfg.wsClients > cfg.clients {
		cfg.wsClients = cfg.clients
	}
	if cfg.senders > cfg.clients {
		fmt.Fprintln(os.Stderr, "chatbench: -senders must not exceed -clients")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	res.print(os.Stdout)
}

// client is one connection and what its reader saw.
type client struct {
	id       int
	w        wire
	objects  atomic.Int64 // every object received
	got      atomic.Int64 // benchmark messages received
	disorder atomic.Int64
	// hist is the client's reader's: its own goroutine's, or shared by the
	// clients of one poller (one histogram stays in cache; a thousand do
	// not). Owned by that reader until it ends.
	hist    *histogram
	lastSeq []int // per sender; owned by the reader goroutine
}

type sender struct {
	c    *client
	sent atomic.Int64
}

// pacer holds senders back in max-rate runs while the slowest client is
// more than limit messages behind, so that the run measures throughput
// rather than how fast slow clients get dropped.
type pacer struct {
	limit   int64
	clients []*client
	senders []*sender
	orig    bool
}

// lag computes how many messages the slowest client is behind.
func (p *pacer) lag() int64 {
	var sent int64
	for _, s := range p.senders {
		sent += s.sent.Load()
	}
	var worst int64
	for i, c := range p.clients {
		expected := sent
		if p.orig && i < len(p.senders) {
			expected -= p.senders[i].sent.Load() // no echo of its own
		}
		worst = max(worst, expected-c.got.Load())
	}
	return worst
}

// wait blocks while the slowest client is too far behind. Each sender
// checks for itself (every 8 messages, or every time while held back): a
// separate pacing goroutine would itself be starved of CPU under load.
func (p *pacer) wait(ctx context.Context, n int) bool {
	if n%8 != 0 {
		return true
	}
	for p.lag() >= p.limit {
		select {
		case <-time.After(50 * time.Microsecond):
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func run(ctx context.Context, cfg config) (res *result, err error) {
	res = &result{Config: cfg.describe()}
	var before procStat
	if len(cfg.pids) > 0 {
		var err error
		if before, err = readProcs(cfg.pids); err != nil {
			return res, err
		}
		res.ServerRSSBefore = before.rss
	}

	// Connect and log in, 64 at a time.
	clients := make([]*client, cfg.clients)
	closeAll := func() {
		for _, c := range clients {
			if c != nil {
				c.w.close()
			}
		}
	}
	// TCP clients are read through epoll where there is one: cheap per
	// delivery, so the tool takes less of the CPU it shares with the server.
	var pollers []*poller
	if !cfg.goReaders && (cfg.wsClients < cfg.clients || !cfg.wsLibrary) {
		pollers, _ = newPollers(max(cfg.pollers, 1), cfg.pollInterval, !cfg.quickAcks) // nil: goroutines it is
	}
	start := time.Now()
	var connectErr atomic.Value
	var wg, readers sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ws := i >= cfg.clients-cfg.wsClients
			w, err := dial(ctx, cfg, i, ws)
			if err == nil {
				err = login(w, fmt.Sprintf("%s%d", cfg.namePrefix, i), cfg.original)
			}
			if err != nil {
				connectErr.CompareAndSwap(nil, fmt.Errorf("client %d: %w", i, err))
				return
			}
			c := &client{id: i, w: w, lastSeq: make([]int, max(cfg.senders, 1))}
			clients[i] = c
			// Read from the start: the joins of later clients are announced
			// to this one, and a client that does not read gets dropped.
			var tw *tcpWire
			switch w := w.(type) {
			case *tcpWire:
				tw = w
			case *rawWSWire:
				tw = &w.tcpWire
			}
			if tw != nil && pollers != nil {
				// A sender (and the idle run's prober, client 0) writes
				// through its net.Conn; the others leave the runtime's
				// poller (see poller.add).
				if err := pollers[i%len(pollers)].add(c, tw, i >= max(cfg.senders, 1), ws); err != nil {
					connectErr.CompareAndSwap(nil, fmt.Errorf("client %d: %w", i, err))
				}
				return
			}
			c.hist = new(histogram)
			readers.Go(c.read)
		})
	}
	wg.Wait()
	res.ConnectSeconds = time.Since(start).Seconds()
	if err, _ := connectErr.Load().(error); err != nil {
		stopPollers(pollers)
		closeAll()
		readers.Wait()
		return res, err
	}

	senders := make([]*sender, cfg.senders)
	for i := range senders {
		senders[i] = &sender{c: clients[i]}
	}
	// Closing the connections ends the readers; only then are their
	// histograms ours to merge. Pollers stop first: a closed fd may be reused.
	defer func() {
		stopPollers(pollers)
		closeAll()
		readers.Wait()
		var h histogram
		merged := make(map[*histogram]bool)
		for _, c := range clients {
			if c != nil && c.hist != nil && !merged[c.hist] {
				merged[c.hist] = true
				h.merge(c.hist)
			}
		}
		if h.n > 0 {
			res.P50MS, res.P99MS, res.MaxMS = ms(h.quantile(0.50)), ms(h.quantile(0.99)), ms(h.max)
		}
	}()

	// Let the join announcements settle before measuring.
	waitQuiet(ctx, clients, cfg.settle)
	if cfg.gcURL != "" {
		if resp, err := http.Get(cfg.gcURL); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		time.Sleep(cfg.settle) // the runtime returns freed pages to the OS over a few seconds
	}
	if len(cfg.pids) > 0 {
		idle, err := readProcs(cfg.pids)
		if err != nil {
			return res, err
		}
		res.ServerRSSIdle = idle.rss
		res.BytesPerConn = (idle.rss - before.rss) / int64(cfg.clients)
	}

	if cfg.senders == 0 {
		return res, probe(ctx, clients, cfg, res)
	}
	return res, load(ctx, clients, senders, cfg, res)
}

// read consumes the server's objects on a goroutine of the client's own.
func (c *client) read() {
	for {
		obj, err := c.w.next()
		if err != nil {
			return
		}
		c.handle(obj)
	}
}

// An extended object starts with its type; an original push has none.
var typeKey, messageType = []byte(`{"type":"`), []byte(`{"type":"` + proto.EventMessage + `"`)

// handle takes one object from the server, recording a benchmark message.
// Only the client's reader (its goroutine or its poller) calls it.
func (c *client) handle(obj []byte) {
	c.objects.Add(1)
	if bytes.HasPrefix(obj, typeKey) && !bytes.HasPrefix(obj, messageType) {
		return // a login reply, a join's history, a notice: not a delivery
	}
	s, seq, sent, ok := parsePayload(obj)
	if !ok || s >= len(c.lastSeq) {
		return
	}
	c.hist.record(time.Duration(time.Now().UnixNano() - sent))
	if seq != c.lastSeq[s]+1 {
		c.disorder.Add(1)
	}
	c.lastSeq[s] = seq
	c.got.Add(1)
}

// waitQuiet waits until no client has received anything for quiet (at most
// a minute): the join announcements of a large connect take a while.
func waitQuiet(ctx context.Context, clients []*client, quiet time.Duration) {
	total := func() (n int64) {
		for _, c := range clients {
			n += c.objects.Load()
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	last, since := total(), time.Now()
	for time.Since(since) < quiet && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(quiet / 10)
		if n := total(); n != last {
			last, since = n, time.Now()
		}
	}
}

// probe checks that one message reaches every client.
func probe(ctx context.Context, clients []*client, cfg config, res *result) error {
	msg := request(nil, cfg.original, payload(nil, 0, 1, time.Now(), cfg.size))
	// Client 0 sends as "sender 0"; every client tracks at least one sender.
	start := time.Now()
	want, wait := int64(len(clients)), 30*time.Second
	if cfg.probeListen {
		fmt.Fprintln(os.Stderr, "chatbench: connected; waiting for a probe")
		wait = 2 * time.Minute
	} else {
		if err := clients[0].w.write(msg); err != nil {
			return err
		}
		if cfg.original {
			want-- // no echo to the sender
		}
	}
	for time.Since(start) < wait && ctx.Err() == nil {
		if reached := count(clients, func(c *client) int64 { return c.got.Load() }); reached >= want {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.ProbeReached = count(clients, func(c *client) int64 { return c.got.Load() })
	res.ProbeWanted = want
	res.ProbeSeconds = time.Since(start).Seconds()
	return nil
}

func count(clients []*client, f func(*client) int64) (n int64) {
	for _, c := range clients {
		n += f(c)
	}
	return n
}

// request frames a broadcast as the chosen protocol's client would.
func request(dst []byte, original bool, text []byte) []byte {
	if original {
		dst = append(dst, `{"type": "`+proto.TypeBroadcast+`", "message": "`...)
		dst = append(dst, text...)
		return append(dst, `"}`...)
	}
	dst = append(dst, `{"type":"`+proto.TypeBroadcast+`","message":"`...)
	dst = append(dst, text...)
	return append(dst, "\"}\n"...)
}

// load runs the senders for the duration and measures.
func load(ctx context.Context, clients []*client, senders []*sender, cfg config, res *result) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	var serverStart procStat
	if len(cfg.pids) > 0 {
		serverStart, _ = readProcs(cfg.pids)
	}
	p := &pacer{limit: int64(max(cfg.inflight, 8)), clients: clients, senders: senders, orig: cfg.original}
	selfStart := selfCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range senders {
		wg.Go(func() { s.run(ctx, cfg, p, i, len(senders)) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	deliveredInWindow := count(clients, func(c *client) int64 { return c.got.Load() })

	// Drain: wait (at most 10 s) for what was sent to arrive.
	var sent int64
	for _, s := range senders {
		sent += s.sent.Load()
	}
	perMessage := int64(len(clients))
	if cfg.original {
		perMessage--
	}
	expected := sent * perMessage
	drainStart := time.Now()
	for count(clients, func(c *client) int64 { return c.got.Load() }) < expected && time.Since(drainStart) < 10*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	total := time.Since(start)
	delivered := count(clients, func(c *client) int64 { return c.got.Load() })
	if len(cfg.pids) > 0 {
		end, err := readProcs(cfg.pids)
		if err != nil {
			return err
		}
		res.ServerCPUSeconds = (end.cpu - serverStart.cpu).Seconds()
		res.ServerRSSEnd = end.rss
	}
	res.ToolCPUSeconds = (selfCPU() - selfStart).Seconds()
	res.Sent = sent
	res.Expected = expected
	res.Delivered = delivered
	res.Lost = expected - delivered
	res.OutOfOrder = count(clients, func(c *client) int64 { return c.disorder.Load() })
	res.DeliveriesPerSec = float64(deliveredInWindow) / elapsed.Seconds()
	res.WindowSeconds = total.Seconds()
	if delivered > 0 {
		res.ServerCPUPerDeliveryUS = res.ServerCPUSeconds / float64(delivered) * 1e6
		res.ToolCPUPerDeliveryUS = res.ToolCPUSeconds / float64(delivered) * 1e6
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// run sends until ctx ends: at the configured total rate, or as fast as the
// in-flight cap allows.
func (s *sender) run(ctx context.Context, cfg config, p *pacer, index, count int) {
	var buf, text []byte
	var interval time.Duration
	if cfg.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(count) / cfg.rate)
	}
	start := time.Now()
	for seq := 1; ctx.Err() == nil; seq++ {
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(seq-1) * interval)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
		} else if !p.wait(ctx, seq) {
			return
		}
		text = payload(text[:0], index, seq, time.Now(), cfg.size)
		buf = request(buf[:0], cfg.original, text)
		if err := s.c.w.write(buf); err != nil {
			return
		}
		s.sent.Add(1)
	}
}

// result is what a run reports.
type result struct {
	Config                 string  `json:"config"`
	ConnectSeconds         float64 `json:"connect_login_seconds"`
	ServerRSSBefore        int64   `json:"server_rss_before,omitempty"`
	ServerRSSIdle          int64   `json:"server_rss_connected,omitempty"`
	BytesPerConn           int64   `json:"server_bytes_per_conn,omitempty"`
	ProbeWanted            int64   `json:"probe_wanted,omitempty"`
	ProbeReached           int64   `json:"probe_reached,omitempty"`
	ProbeSeconds           float64 `json:"probe_seconds,omitempty"`
	Sent                   int64   `json:"sent,omitempty"`
	Expected               int64   `json:"expected,omitempty"`
	Delivered              int64   `json:"delivered,omitempty"`
	Lost                   int64   `json:"lost"`
	OutOfOrder             int64   `json:"out_of_order"`
	DeliveriesPerSec       float64 `json:"deliveries_per_sec,omitempty"`
	WindowSeconds          float64 `json:"window_seconds,omitempty"`
	P50MS                  float64 `json:"p50_ms,omitempty"`
	P99MS                  float64 `json:"p99_ms,omitempty"`
	MaxMS                  float64 `json:"max_ms,omitempty"`
	ServerCPUSeconds       float64 `json:"server_cpu_seconds,omitempty"`
	ServerCPUPerDeliveryUS float64 `json:"server_cpu_us_per_delivery,omitempty"`
	ServerRSSEnd           int64   `json:"server_rss_end,omitempty"`
	ToolCPUSeconds         float64 `json:"tool_cpu_seconds,omitempty"`
	ToolCPUPerDeliveryUS   float64 `json:"tool_cpu_us_per_delivery,omitempty"`
}

// splitList splits a comma-separated flag value, dropping empty parts.
func splitList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (c config) describe() string {
	proto := "extended"
	if c.original {
		proto = "original"
	}
	rate := "max"
	if c.rate > 0 {
		rate = fmt.Sprintf("%.0f/s", c.rate)
	}
	nodes := ""
	if n := max(len(c.tcpAddrs), len(c.wsURLs)); n > 1 {
		nodes = fmt.Sprintf(", over %d nodes", n)
	}
	return fmt.Sprintf("%d clients (%d ws), %d senders, %s protocol, rate %s, %s, %d-byte messages%s",
		c.clients, c.wsClients, c.senders, proto, rate, c.duration, c.size, nodes)
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "%-30s %s\n", "scenario", r.Config)
	fmt.Fprintf(w, "%-30s %.2f s\n", "connect + login", r.ConnectSeconds)
	if r.BytesPerConn != 0 {
		fmt.Fprintf(w, "%-30s %.1f MiB -> %.1f MiB (%.1f KiB per connection)\n", "server RSS idle",
			mib(r.ServerRSSBefore), mib(r.ServerRSSIdle), float64(r.BytesPerConn)/1024)
	}
	if r.ProbeWanted != 0 {
		fmt.Fprintf(w, "%-30s %d of %d clients in %.3f s\n", "one message reached", r.ProbeReached, r.ProbeWanted, r.ProbeSeconds)
	}
	if r.Sent != 0 {
		fmt.Fprintf(w, "%-30s %d sent, %d delivered of %d, %d lost, %d out of order\n", "messages", r.Sent, r.Delivered, r.Expected, r.Lost, r.OutOfOrder)
		fmt.Fprintf(w, "%-30s %.0f\n", "deliveries/s", r.DeliveriesPerSec)
		fmt.Fprintf(w, "%-30s p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", "latency", r.P50MS, r.P99MS, r.MaxMS)
		fmt.Fprintf(w, "%-30s server %.2f s (%.3f us/delivery), load tool %.2f s (%.3f us/delivery)\n", "CPU",
			r.ServerCPUSeconds, r.ServerCPUPerDeliveryUS, r.ToolCPUSeconds, r.ToolCPUPerDeliveryUS)
		if r.ToolCPUSeconds > r.ServerCPUSeconds && r.ServerCPUSeconds > 0 {
			fmt.Fprintf(w, "%-30s the load tool used more CPU than the server: it may be the bottleneck\n", "note")
		}
	}
	line, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", line)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
