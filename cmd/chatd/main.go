// Command chatd runs the chat server: rooms shared by native TCP clients
// and people at nc or telnet (port 8000, the original Python client's port)
// and browsers (HTTP and WebSocket on port 8080), with history kept in an
// SQLite file (chatd.db) and the tutorial's snack shop as a bot.
//
// Every flag can also be set by an environment variable named CHATD_ plus the
// flag's name in upper case with '-' as '_' (CHATD_TCP, CHATD_HTTP, ...). A
// flag on the command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"chatroom/hub/bot/shop"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	cfg, err := parseConfig(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := NewMain(cfg)
	if err := m.Run(ctx); err != nil {
		return err
	}
	log := cfg.Logger
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	log.Info("chatd ready",
		"browser", scheme+"://"+browseAddr(m.HTTPAddr())+"/",
		"terminal", "go run ./cmd/chat -addr "+browseAddr(m.TCPAddr()),
		"tcp", m.TCPAddr(), "http", m.HTTPAddr())

	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case err := <-m.Err():
		log.Error("server failed; shutting down", "err", err)
	}
	stop() // a second signal now kills at once
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return m.Close(sctx)
}

// parseConfig reads flags, falling back to CHATD_* environment variables.
func parseConfig(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	var level, shopGoods string
	fs.StringVar(&cfg.TCPAddr, "tcp", DefaultTCPAddr, "listen address of the TCP front (native clients, the original Python client)")
	fs.StringVar(&cfg.HTTPAddr, "http", DefaultHTTPAddr, "listen address of the HTTP front (web page at /, WebSocket at /ws)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "how long shutdown lets clients drain their queues before cutting them off")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message", 0, "longest chat message in bytes (0: 4096)")
	fs.Var(stringList{&cfg.AllowedOrigins}, "allow-origin", "extra `host` pattern whose pages may open a WebSocket, e.g. '*.example.com' (repeatable, comma-separated); same-host pages are always allowed")
	fs.IntVar(&cfg.HistoryOnJoin, "history", 0, "recent messages a member gets on joining a room (0: 100; negative: none)")
	fs.StringVar(&cfg.DataPath, "data", "chatd.db", "history database file (SQLite; created if missing); \":memory:\" keeps history in memory only, lost at exit")
	fs.StringVar(&cfg.Sync, "sync", "normal", "database durability: \"normal\" (a saved message survives chatd being killed) or \"full\" (it survives power loss too; each save waits for the disk)")
	fs.IntVar(&cfg.HistoryRetain, "history-retain", 0, "messages each room keeps: in the database (0: 10000) or, with -data :memory:, in memory (0: 1000, and at most 1 MiB of memory per room)")
	fs.DurationVar(&cfg.HistoryMaxAge, "history-max-age", 0, "delete messages older than this from the database, e.g. 2160h for 90 days (0: kept until -history-retain pushes them out)")
	fs.IntVar(&cfg.MaxRooms, "max-rooms", 0, "most rooms that exist; a room nobody is in makes way for a new one (0: 500)")
	fs.IntVar(&cfg.MaxRoomsPerIP, "max-rooms-per-ip", 0, "most rooms one IP address may have created that still exist (0: 20)")
	fs.IntVar(&cfg.MaxRequestBytes, "max-request", 0, "largest request in bytes, a TCP line or WebSocket message; larger closes the connection (0: 65536)")
	fs.Float64Var(&cfg.Session.RequestRate, "rate", 0, "requests per second a connection may make; excess is refused (0: 10; negative: unlimited)")
	fs.IntVar(&cfg.Session.RequestBurst, "burst", 0, "requests a connection may make at once above -rate (0: 20)")
	fs.IntVar(&cfg.Session.RefusalBurst, "max-refusals", 0, "refused requests in a row (refilling at 1/s) before a connection is dropped for abuse (0: 20)")
	fs.DurationVar(&cfg.Session.LoginTimeout, "login-timeout", 0, "how long a connection may stay without logging in (0: 30s)")
	fs.DurationVar(&cfg.Session.PushGap, "original-push-gap", 0, "least time between two pushes to an original-protocol client, which loses pushes that reach it together (0: 1ms; negative: none)")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", 0, "WebSocket keepalive ping interval; a peer silent for two is dropped (0: 30s)")
	fs.IntVar(&cfg.Admission.MaxConns, "max-conns", 0, "most connections in all (0: 20000; negative: unlimited)")
	fs.IntVar(&cfg.Admission.MaxConnsPerIP, "max-conns-per-ip", 0, "most connections from one IP address (0: 100; negative: unlimited)")
	fs.Float64Var(&cfg.Admission.ConnRatePerIP, "conn-rate", 0, "new connections per second from one IP address (0: 20; negative: unlimited)")
	fs.IntVar(&cfg.Admission.ConnBurst, "conn-burst", 0, "new connections at once from one IP address above -conn-rate (0: 50)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "certificate file (PEM): serve HTTPS/WSS and TLS on the TCP front (needs -tls-key)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "private key file (PEM) for -tls-cert")
	fs.IntVar(&cfg.Session.QueueMessages, "queue-messages", 0, "per-client send queue bound in messages; a client that falls this far behind is disconnected (0: 1024)")
	fs.IntVar(&cfg.Session.QueueBytes, "queue-bytes", 0, "per-client send queue bound in bytes (0: 1 MiB)")
	fs.IntVar(&cfg.Flushers, "flushers", 0, "goroutines that write to clients without blocking, shared by both fronts (0: half the CPUs, at least one)")
	fs.DurationVar(&cfg.Session.WriteTimeout, "write-timeout", 0, "a client that accepts no data for this long is disconnected (0: 10s)")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", "", "the operator's address: Prometheus metrics at http://ADDR/metrics and Go's pprof profiles at /debug/pprof/ (keep it private, e.g. 127.0.0.1:6060)")
	fs.BoolVar(&cfg.PublicMetrics, "public-metrics", false, "also serve /metrics on the public HTTP address (anyone who can reach it can read it)")
	fs.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", 0, "close an HTTP keep-alive connection idle this long (0: 30s)")
	fs.BoolVar(&cfg.Shop, "shop", true, "run the snack-shop bot: in #shop, by private message to shop, or '@shop ITEM' in the lobby")
	fs.StringVar(&shopGoods, "shop-goods", "", "JSON file of the shop's goods, [{\"name\":\"西瓜\",\"price\":2,\"stock\":100}] (default: the tutorial's 瓜子 4.5, 西瓜 2, 矿泉水 2.5, 100 each)")
	fs.StringVar(&cfg.NATSURL, "nats", "", "make this chatd one node of a cluster sharing every room through NATS JetStream at this `URL` (e.g. nats://127.0.0.1:4222); without it chatd is alone")
	fs.StringVar(&cfg.NodeName, "node", "", "this node's name in the cluster (letters, digits, '-', '_'; default: random)")
	fs.DurationVar(&cfg.NodeDeadAfter, "node-dead-after", 0, "a node unheard of this long is dead: its members are announced gone and their nicknames freed (0: 15s)")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatd [flags]\n\nRuns the chat server. Each flag may also be set as CHATD_<FLAG> in the environment\n(e.g. CHATD_TCP=:9000); the command line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Environment first, so that flags given on the command line override it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "CHATD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookupEnv(name); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return cfg, fmt.Errorf("-log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if shopGoods != "" {
		goods, err := shop.LoadGoods(shopGoods)
		if err != nil {
			return cfg, err
		}
		cfg.ShopGoods = goods
	}
	if cfg.DataPath == ":memory:" {
		cfg.DataPath = "" // Config's way of saying "in memory"
	}
	return cfg, nil
}

// stringList is a repeatable, comma-separated flag.
type stringList struct{ list *[]string }

func (s stringList) String() string {
	if s.list == nil {
		return ""
	}
	return strings.Join(*s.list, ",")
}

func (s stringList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s.list = append(*s.list, part)
		}
	}
	return nil
}

// browseAddr turns a listen address into one a local user can type:
// ":8080" and "0.0.0.0:8080" become "localhost:8080".
func browseAddr(addr string) string {
	for _, any := range []string{"0.0.0.0:", "[::]:"} {
		if strings.HasPrefix(addr, any) {
			return "localhost:" + strings.TrimPrefix(addr, any)
		}
	}
	if strings.HasPrefix(addr, ":") {
		return "localhost" + addr
	}
	return addr
}

// DefaultShutdownTimeout is how long shutdown waits for clients by default.
const DefaultShutdownTimeout = 5 * time.Second
