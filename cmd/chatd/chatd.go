package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"chatroom/hub"
	"chatroom/hub/session"
	"chatroom/tcpfront"
	"chatroom/webfront"
)

// Default listen addresses.
const (
	DefaultTCPAddr  = ":8000"
	DefaultHTTPAddr = ":8080"
)

// Config is everything chatd is configured with.
type Config struct {
	TCPAddr         string
	HTTPAddr        string
	ShutdownTimeout time.Duration
	MaxMessageBytes int
	AllowedOrigins  []string
	// Session tunes every client connection (queue bounds, write timeout).
	Session session.Options
	Logger  *slog.Logger
}

// Main is one running chatd: a hub and its two fronts. Run starts it, Close
// stops it; the end-to-end tests use it on ":0" exactly as main does.
type Main struct {
	cfg Config
	log *slog.Logger

	Hub  *hub.Hub
	TCP  *tcpfront.Server
	Web  *webfront.Server
	http *http.Server

	tcpLn, httpLn net.Listener
	errc          chan error
}

// NewMain returns an unstarted server.
func NewMain(cfg Config) *Main {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	return &Main{cfg: cfg, log: cfg.Logger, errc: make(chan error, 2)}
}

// Run builds the hub, binds both listeners and starts serving in the
// background. It returns once both addresses accept connections.
func (m *Main) Run(ctx context.Context) (err error) {
	m.Hub, err = hub.New(hub.Options{Logger: m.log, MaxMessageBytes: m.cfg.MaxMessageBytes})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	if m.tcpLn, err = lc.Listen(ctx, "tcp", m.cfg.TCPAddr); err != nil {
		return fmt.Errorf("listen tcp front: %w", err)
	}
	if m.httpLn, err = lc.Listen(ctx, "tcp", m.cfg.HTTPAddr); err != nil {
		_ = m.tcpLn.Close()
		return fmt.Errorf("listen http front: %w", err)
	}
	m.TCP = tcpfront.New(m.Hub, tcpfront.Options{Logger: m.log, Session: m.cfg.Session})
	m.Web = webfront.New(m.Hub, webfront.Options{Logger: m.log, AllowedOrigins: m.cfg.AllowedOrigins, Session: m.cfg.Session})
	m.http = &http.Server{
		Handler:           m.Web.Routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := m.TCP.Serve(m.tcpLn); err != nil {
			m.errc <- err
		}
	}()
	go func() {
		if err := m.http.Serve(m.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.errc <- fmt.Errorf("http front: %w", err)
		}
	}()
	return nil
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
	var errs []error
	if err := m.Hub.Shutdown(ctx, "server shutting down"); err != nil {
		errs = append(errs, err)
	}
	// http.Server.Shutdown closes the listener and idle HTTP connections but
	// not hijacked WebSockets: the web front closes those itself.
	if err := m.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	done := make(chan error, 2)
	go func() { done <- m.TCP.Shutdown(ctx) }()
	go func() { done <- m.Web.Shutdown(ctx) }()
	for range 2 {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
