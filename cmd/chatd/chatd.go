package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"chatroom/hub"
	"chatroom/hub/admission"
	"chatroom/hub/bot"
	"chatroom/hub/bot/shop"
	"chatroom/hub/metrics"
	"chatroom/hub/nats"
	"chatroom/hub/session"
	"chatroom/hub/sqlite"
	"chatroom/tcpfront"
	"chatroom/webfront"
)

// Defaults.
const (
	DefaultTCPAddr  = ":8000"
	DefaultHTTPAddr = ":8080"
	// DefaultHTTPIdleTimeout is how long an idle keep-alive HTTP connection
	// is kept: long enough for a page's requests to share one.
	DefaultHTTPIdleTimeout = 30 * time.Second
)

// Config is everything chatd is configured with.
type Config struct {
	TCPAddr         string
	HTTPAddr        string
	ShutdownTimeout time.Duration
	MaxMessageBytes int
	// HistoryOnJoin is how many recent messages a member gets on joining a
	// room (0: 100; negative: none).
	HistoryOnJoin int
	// MaxRooms bounds the rooms that exist (0: hub.DefaultMaxRooms); empty
	// ones make way for new ones.
	MaxRooms int
	// MaxRoomsPerIP bounds the rooms one address may have created that
	// still exist (0: hub.DefaultMaxRoomsPerPeer).
	MaxRoomsPerIP int
	// DataPath is the history database file. Empty: history in memory
	// only (the chatd command's -data defaults to chatd.db; its ":memory:"
	// is this).
	DataPath string
	// HistoryMaxAge deletes messages older than this from the database
	// (0: kept until -history-retain pushes them out).
	HistoryMaxAge time.Duration
	// DataMaxPages caps the database's size in 4 KiB pages, as a full disk
	// would (tests). 0: no cap.
	DataMaxPages int
	// Sync is the database's synchronous setting, "normal" or "full" (see
	// sqlite.Options.Sync).
	Sync string
	// HistoryRetain is how many messages each room keeps: in the database
	// (0: 10000) or, without one, in memory (0: 1000).
	HistoryRetain  int
	AllowedOrigins []string
	// MaxRequestBytes bounds one request on either front (0: 64 KiB).
	MaxRequestBytes int
	// PingInterval for WebSocket keepalive (0: 30s).
	PingInterval time.Duration
	// TLSCertFile and TLSKeyFile, when both set, serve HTTPS/WSS and TLS on
	// the TCP front.
	TLSCertFile, TLSKeyFile string
	// Session tunes every client connection (queues, timeouts, rate limits).
	Session session.Options
	// Flushers is how many goroutines write clients' queues without
	// blocking, shared by both fronts (0: session.DefaultFlushers).
	Flushers int
	// Admission limits connections (total, per IP, per-IP rate).
	Admission admission.Options
	// HTTPIdleTimeout closes an HTTP keep-alive connection idle this long
	// (0: DefaultHTTPIdleTimeout).
	HTTPIdleTimeout time.Duration
	// DebugAddr, if set, is the operator's address: Prometheus metrics at
	// /metrics and pprof profiles at /debug/pprof/. Keep it private.
	DebugAddr string
	// PublicMetrics also serves /metrics on the public HTTP address.
	PublicMetrics bool
	// Shop runs the snack-shop bot (hub/bot/shop) in #shop (the chatd
	// command's -shop is on by default; Config's zero value is off).
	Shop bool
	// ShopGoods is what the shop sells (nil: shop.DefaultGoods).
	ShopGoods []shop.Item
	// NATSURL, if set, makes this chatd one node of a cluster that shares
	// every room through NATS JetStream at that address (hub/nats).
	NATSURL string
	// NodeName is this node's name in the cluster (default: random).
	NodeName string
	// NodeDeadAfter is how long a node may go unheard before its members
	// are announced gone (0: nats.DefaultDeadAfter).
	NodeDeadAfter time.Duration
	Logger        *slog.Logger
}

// Main is one running chatd: a hub and its two fronts. Run starts it, Close
// stops it; the end-to-end tests use it on ":0" exactly as main does.
type Main struct {
	cfg Config
	log *slog.Logger

	Hub       *hub.Hub
	TCP       *tcpfront.Server
	Web       *webfront.Server
	Admission *admission.Controller
	http      *http.Server

	tcpLn, httpLn net.Listener
	flusher       *session.Flusher
	debug         *http.Server
	debugLn       net.Listener
	shop          *bot.Bot          // nil: no shop
	store         *sqlite.Store     // nil: history in memory
	broker        *hub.MemoryBroker // journaled, with store, alone
	Cluster       *nats.Cluster     // nil: alone
	errc          chan error
	ready         atomic.Bool
}

// NewMain returns an unstarted server.
func NewMain(cfg Config) *Main {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.HTTPIdleTimeout <= 0 {
		cfg.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	return &Main{cfg: cfg, log: cfg.Logger, errc: make(chan error, 2)}
}

// Run builds the hub, binds both listeners and starts serving in the
// background. It returns once both addresses accept connections.
func (m *Main) Run(ctx context.Context) (err error) {
	var tlsConfig *tls.Config
	if m.cfg.TLSCertFile != "" || m.cfg.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(m.cfg.TLSCertFile, m.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met := metrics.New(reg, func() int { return m.Hub.Len() })
	hubOpts := hub.Options{Logger: m.log, MaxMessageBytes: m.cfg.MaxMessageBytes, Observer: met,
		HistoryOnJoin: m.cfg.HistoryOnJoin, History: &hub.MemoryHistory{Retain: m.cfg.HistoryRetain},
		MaxRooms: m.cfg.MaxRooms, MaxRoomsPerPeer: m.cfg.MaxRoomsPerIP}
	if m.cfg.DataPath != "" {
		if err := m.openStore(ctx, &hubOpts); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				m.closeStore() // so that a retry can take its lock
			}
		}()
	}
	if m.cfg.NATSURL != "" {
		if err := m.joinCluster(ctx, &hubOpts); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				_ = m.Cluster.Close(context.Background())
			}
		}()
	}
	if m.Hub, err = hub.New(hubOpts); err != nil {
		return err
	}
	if m.Cluster != nil {
		if err := m.Cluster.Start(ctx); err != nil {
			return err
		}
		go func() {
			if err, ok := <-m.Cluster.Err(); ok {
				m.errc <- err
			}
		}()
	}

	// Keepalive probes reap TCP peers that vanished without a FIN.
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}}
	if m.tcpLn, err = lc.Listen(ctx, "tcp", m.cfg.TCPAddr); err != nil {
		return fmt.Errorf("listen tcp front: %w", err)
	}
	if m.httpLn, err = lc.Listen(ctx, "tcp", m.cfg.HTTPAddr); err != nil {
		_ = m.tcpLn.Close()
		return fmt.Errorf("listen http front: %w", err)
	}

	admissionOpts := m.cfg.Admission
	admissionOpts.Observer = met
	admit := admission.New(admissionOpts)
	m.Admission = admit
	sessionOpts := m.cfg.Session
	sessionOpts.Observer = met
	m.flusher = session.NewFlusher(m.cfg.Flushers)
	sessionOpts.Flusher = m.flusher
	m.TCP = tcpfront.New(m.Hub, tcpfront.Options{Logger: m.log, Session: sessionOpts,
		Admission: admit, MaxRequestBytes: m.cfg.MaxRequestBytes})
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	webOpts := webfront.Options{Logger: m.log, Session: sessionOpts,
		Admission: admit, MaxRequestBytes: m.cfg.MaxRequestBytes,
		AllowedOrigins: m.cfg.AllowedOrigins, PingInterval: m.cfg.PingInterval,
		Ready: m.isReady}
	if m.cfg.PublicMetrics {
		webOpts.Metrics = metricsHandler
	}
	m.Web = webfront.New(m.Hub, webOpts)
	m.http = &http.Server{
		Handler: m.Web.Routes(),
		// Every HTTP connection holds a descriptor and a place under the
		// connection limits: one that sends nothing, or idles between
		// requests, is closed. (A WebSocket is exempt once upgraded.)
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       m.cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	// Admission counts every HTTP connection, under TLS if any.
	tcpLn, httpLn := m.tcpLn, m.Web.Listener(m.httpLn)
	if tlsConfig != nil {
		tcpLn, httpLn = tls.NewListener(tcpLn, tlsConfig), tls.NewListener(httpLn, tlsConfig)
	}
	go func() {
		if err := m.TCP.Serve(tcpLn); err != nil {
			m.errc <- err
		}
	}()
	go func() {
		if err := m.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.errc <- fmt.Errorf("http front: %w", err)
		}
	}()
	if m.cfg.DebugAddr != "" {
		if err := m.serveDebug(metricsHandler); err != nil {
			_ = m.tcpLn.Close()
			_ = m.httpLn.Close()
			return err
		}
	}
	if m.cfg.Shop {
		goods := m.cfg.ShopGoods
		if goods == nil {
			goods = shop.DefaultGoods()
		}
		m.shop, err = shop.Start(ctx, m.Hub, goods, bot.Options{Logger: m.log})
		switch {
		case m.Cluster != nil && errors.Is(err, hub.ErrNicknameTaken):
			m.log.Info("the shop is kept by another node")
			err = nil
		case err != nil:
			m.stopServing()
			return err
		}
	}
	m.ready.Store(true)
	return nil
}

// stopServing undoes a Run that failed after its fronts started.
func (m *Main) stopServing() {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownTimeout)
	defer cancel()
	_ = m.http.Shutdown(ctx)
	_ = m.TCP.Shutdown(ctx)
	_ = m.Web.Shutdown(ctx)
	if m.debug != nil {
		_ = m.debug.Close()
	}
	m.flusher.Close()
}

// openStore opens the history database and makes the hub durable with it:
// events are written before they are delivered (a journaled broker), the
// history is the database's, and the rooms that have history exist again.
func (m *Main) openStore(ctx context.Context, opts *hub.Options) error {
	store, err := sqlite.Open(ctx, sqlite.Options{Path: m.cfg.DataPath, Retain: m.cfg.HistoryRetain,
		MaxAge: m.cfg.HistoryMaxAge, Sync: m.cfg.Sync, MaxRooms: m.cfg.MaxRooms, MaxPageCount: m.cfg.DataMaxPages, Logger: m.log})
	if err != nil {
		return fmt.Errorf("history database: %w", err)
	}
	rooms, err := store.Rooms(ctx)
	if err != nil {
		_ = store.Close()
		return fmt.Errorf("history database: %w", err)
	}
	m.store = store
	opts.History, opts.Rooms = store, rooms
	if m.cfg.NATSURL == "" { // alone: the database is the journal
		m.broker = hub.NewJournaledBroker(store)
		opts.Broker, opts.Epoch = m.broker, store.Epoch()
	}
	m.log.Info("history database open", "path", m.cfg.DataPath, "rooms", len(rooms))
	return nil
}

// joinCluster connects to NATS and makes the hub one node of the cluster:
// the cluster is its broker and directory, and this node's database (if
// any) is a copy of the cluster's history.
func (m *Main) joinCluster(ctx context.Context, opts *hub.Options) error {
	copts := nats.Options{URL: m.cfg.NATSURL, Name: m.cfg.NodeName, DeadAfter: m.cfg.NodeDeadAfter,
		Retain: m.cfg.HistoryRetain, Logger: m.log}
	if m.store != nil {
		copts.Journal = m.store
	}
	c, err := nats.Open(ctx, copts)
	if err != nil {
		return err
	}
	m.Cluster = c
	opts.Broker, opts.Directory, opts.Epoch, opts.FirstID = c, c, c.Epoch(), c.FirstID()
	m.log.Info("joining the cluster", "nats", m.cfg.NATSURL, "node", c.Name())
	return nil
}

// closeStore stops the journaled broker (what was published is written and
// delivered) and closes the database.
func (m *Main) closeStore() {
	if m.store == nil {
		return
	}
	if m.broker != nil {
		_ = m.broker.Close()
	}
	if err := m.store.Close(); err != nil {
		m.log.Error("close history database", "err", err)
	}
	m.store = nil
}

// isReady is /readyz: serving, and able to save what is said.
func (m *Main) isReady() bool {
	return m.ready.Load() && (m.store == nil || m.store.Err() == nil) &&
		(m.Cluster == nil || m.Cluster.Ready() == nil)
}

// serveDebug serves the operator's endpoints on DebugAddr: Prometheus
// metrics, pprof profiles, and a way to return freed memory to the OS.
func (m *Main) serveDebug(metrics http.Handler) error {
	ln, err := net.Listen("tcp", m.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("listen debug address: %w", err)
	}
	m.debugLn = ln
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// For memory measurements: collect garbage and return freed memory
	// to the OS now, so RSS shows what is live (chatbench -gc-url). Two
	// collections: a sync.Pool (read and write buffers) lets go of
	// what it holds over two, as it does on its own in steady state,
	// and each collection also halves stacks left large by a burst.
	mux.HandleFunc("/debug/freeosmemory", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		_, _ = w.Write([]byte("ok\n"))
	})
	m.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: m.cfg.HTTPIdleTimeout}
	go func() {
		if err := m.debug.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("debug server", "err", err)
		}
	}()
	return nil
}

// DebugAddr is the operator's address as bound ("" without -debug-addr).
func (m *Main) DebugAddr() string {
	if m.debugLn == nil {
		return ""
	}
	return m.debugLn.Addr().String()
}

// TCPAddr is the TCP front's bound address.
func (m *Main) TCPAddr() string { return m.tcpLn.Addr().String() }

// HTTPAddr is the HTTP front's bound address.
func (m *Main) HTTPAddr() string { return m.httpLn.Addr().String() }

// Err reports a front that stopped serving on its own.
func (m *Main) Err() <-chan error { return m.errc }

// Close shuts down gracefully: members get a notice, new connections are
// refused, every client gets what is queued for it (WebSockets then close
// with 1001), and whatever is left when ctx expires is cut off.
func (m *Main) Close(ctx context.Context) error {
	m.ready.Store(false)
	var errs []error
	notice := "server shutting down"
	if m.Cluster != nil {
		notice = "server " + m.Cluster.Name() + " shutting down: its members reconnect to another"
	}
	if err := m.Hub.Shutdown(ctx, notice); err != nil {
		errs = append(errs, err)
	}
	// http.Server.Shutdown closes the listener and idle HTTP connections but
	// not hijacked WebSockets: the web front closes those itself.
	if err := m.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if m.debug != nil {
		_ = m.debug.Close()
	}
	done := make(chan error, 2)
	go func() { done <- m.TCP.Shutdown(ctx) }()
	go func() { done <- m.Web.Shutdown(ctx) }()
	for range 2 {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
	}
	if m.shop != nil {
		_ = m.shop.Close()
	}
	m.flusher.Close() // the fronts' sessions are over: none is left to flush
	if m.Cluster != nil {
		// The members have logged out: their presence and nicknames
		// are given back to the cluster before this node leaves it.
		if err := m.Cluster.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	m.closeStore()
	return errors.Join(errs...)
}
