// Package webfront serves the chat to browsers: the page embedded from
// package web at "/", and the chat protocol over WebSocket at "/ws", one JSON
// object per text message. Routing is go-chi/chi; WebSocket is
// coder/websocket.
package webfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"chatroom/hub"
	"chatroom/hub/admission"
	"chatroom/hub/session"
	"chatroom/web"
)

// Defaults for Options.
const (
	DefaultMaxRequestBytes = 64 << 10
	DefaultPingInterval    = 30 * time.Second
)

// Options configure a Server. The zero value of every field is a documented
// default.
type Options struct {
	// AllowedOrigins lists extra host patterns (path.Match syntax, such as
	// "chat.example.com" or "*.example.com") whose pages may open a
	// WebSocket. Default: none, only pages served from the same host, which
	// blocks cross-site WebSocket hijacking.
	AllowedOrigins []string
	// MaxRequestBytes bounds one WebSocket message; a longer one closes the
	// connection with status 1009. Default DefaultMaxRequestBytes.
	MaxRequestBytes int
	// PingInterval is how often an idle WebSocket is pinged; a peer that
	// does not answer within another PingInterval is disconnected, so dead
	// peers are reaped. Default DefaultPingInterval.
	PingInterval time.Duration
	// Session tunes every connection's session. Its Flusher defaults to
	// one of the server's own (session.DefaultFlushers goroutines, stopped
	// by Shutdown).
	Session session.Options
	// Admission decides whether each new HTTP connection is served, a
	// WebSocket or not: serve on Listener(ln) for it to apply. Default: no
	// limits.
	Admission *admission.Controller
	// Ready reports whether the server should receive traffic (/readyz).
	// Default: always.
	Ready func() bool
	// Metrics, if set, is served at /metrics.
	Metrics http.Handler
	// Logger receives lifecycle logs. Default: discard.
	Logger *slog.Logger
}

// Server serves the page and the WebSocket endpoint. Mount Routes() in an
// http.Server; call Shutdown after that server's Shutdown, since it does not
// track hijacked (WebSocket) connections.
type Server struct {
	hub  *hub.Hub
	opts Options
	log  *slog.Logger

	front *session.Front
}

// New returns a server that admits browsers to h.
func New(h *hub.Hub, opts Options) *Server {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Session.Logger == nil {
		opts.Session.Logger = opts.Logger
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.Ready == nil {
		opts.Ready = func() bool { return true }
	}
	return &Server{hub: h, opts: opts, log: opts.Logger, front: session.NewFront(h, opts.Session)}
}

// Routes returns the HTTP handler: the page, /ws, /healthz (alive),
// /readyz (ready for traffic) and, when configured, /metrics.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/ws", s.serveWebSocket)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { plain(w, http.StatusOK, "ok") })
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.opts.Ready() {
			plain(w, http.StatusOK, "ready")
			return
		}
		plain(w, http.StatusServiceUnavailable, "not ready")
	})
	if s.opts.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", s.opts.Metrics)
	}
	r.With(securityHeaders).Handle("/*", http.FileServerFS(web.Files()))
	return r
}

// securityHeaders lets the page load only its own scripts and styles and
// talk only to its own server, a second wall behind rendering every message
// as text.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

func plain(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text + "\n"))
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	// The connection was admitted when it was accepted (Listener).
	cw := &hijackingResponseWriter{ResponseWriter: w}
	ws, err := websocket.Accept(cw, r, &websocket.AcceptOptions{OriginPatterns: s.opts.AllowedOrigins})
	if err != nil {
		// Accept has already answered (403 for a foreign origin).
		s.log.Info("websocket upgrade refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	ws.SetReadLimit(int64(s.opts.MaxRequestBytes))
	attrs := []any{"front", "ws", "remote", r.RemoteAddr}
	s.log.Info("connection opened", attrs...)
	opts := s.front.Options()
	opts.LogAttrs = attrs
	opts.Peer = admission.Peer(r.RemoteAddr)
	conn := &wsConn{ws: ws, conn: cw.conn}
	conn.keepAlive(s.opts.PingInterval)
	// Serve on a fresh goroutine and let this handler return: the
	// connection is hijacked, so net/http is done with it, and its deep
	// handler stack (16 KiB once grown) and the request's headers are freed
	// instead of being held by every idle WebSocket.
	go func() {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic serving connection", append(attrs, "panic", p)...)
				_ = ws.CloseNow()
			}
		}()
		var sc session.Conn = conn
		if conn.conn.w.CanTry() { // a plain socket (not TLS): it can write without blocking
			sc = socketWSConn{conn}
		}
		_ = s.front.Run(s.front.NewSession(sc, opts))
	}()
}

// Shutdown disconnects every WebSocket client with status 1001 (each first
// gets what is queued for it) and waits for them, aborting the rest when ctx
// expires.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.front.Shutdown(ctx)
}

// Len returns the number of open WebSocket connections.
func (s *Server) Len() int { return s.front.Len() }

// wsConn adapts a WebSocket connection to session.Conn.
type wsConn struct {
	ws   *websocket.Conn
	conn *frameConn // under ws: batches of messages leave in one write

	mu        sync.Mutex
	pingTimer *time.Timer // nil once closed
}

// keepAlive pings the peer every interval from a timer (no goroutine while
// idle) and cuts it off when a ping goes unanswered for another interval.
func (c *wsConn) keepAlive(interval time.Duration) {
	var ping func()
	ping = func() {
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := c.ws.Ping(ctx) // the session's reader receives the pong
		cancel()
		if err != nil {
			_ = c.ws.CloseNow()
			return
		}
		c.mu.Lock()
		if c.pingTimer != nil {
			c.pingTimer.Reset(interval)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.pingTimer = time.AfterFunc(interval, ping)
	c.mu.Unlock()
}

func (c *wsConn) stopKeepAlive() {
	c.mu.Lock()
	if c.pingTimer != nil {
		c.pingTimer.Stop()
		c.pingTimer = nil
	}
	c.mu.Unlock()
}

func (c *wsConn) ReadFrame() ([]byte, error) {
	_, data, err := c.ws.Read(context.Background())
	if err != nil {
		switch {
		case websocket.CloseStatus(err) != -1:
			return nil, hub.DisconnectLeft
		case errors.Is(err, websocket.ErrMessageTooBig):
			// The library has already closed with 1009 (message too big).
			return nil, hub.Disconnect{Code: hub.CodeBadInput, Reason: "request too large"}
		}
		return nil, fmt.Errorf("websocket read: %w", err)
	}
	return data, nil
}

func (c *wsConn) WriteFrames(frames [][]byte, deadline time.Time) error {
	if err := c.conn.writeTextMessages(trimNewlines(frames), deadline); err != nil {
		return fmt.Errorf("websocket write: %w", err)
	}
	return nil
}

// trimNewlines drops the '\n' that ends each frame for TCP: a WebSocket
// message needs no separator.
func trimNewlines(frames [][]byte) [][]byte {
	for i, f := range frames {
		if n := len(f); n > 0 && f[n-1] == '\n' {
			frames[i] = f[:n-1]
		}
	}
	return frames
}

// socketWSConn is a wsConn over a plain socket, which can also write without
// blocking (session.TryWriter) for the session's Flusher.
type socketWSConn struct{ *wsConn }

// TryWriteFrames implements session.TryWriter.
func (c socketWSConn) TryWriteFrames(frames [][]byte) (bool, error) {
	done, err := c.conn.tryWriteTextMessages(trimNewlines(frames))
	if err != nil {
		return false, fmt.Errorf("websocket write: %w", err)
	}
	return done, nil
}

func (c *wsConn) Close(d hub.Disconnect) error {
	c.stopKeepAlive()
	status := websocket.StatusNormalClosure
	switch d.Code {
	case hub.CodeShutdown:
		status = websocket.StatusGoingAway
	case hub.CodeSlowConsumer, hub.CodeBadInput, hub.CodeAbuse, hub.CodeTimeout:
		status = websocket.StatusPolicyViolation
	case hub.CodeInternal:
		status = websocket.StatusInternalError
	case hub.CodeWriteFailed, hub.CodeReadFailed:
		return c.ws.CloseNow()
	}
	reason := d.Reason
	if len(reason) > 120 { // a close frame's reason is at most 123 bytes
		reason = reason[:120]
	}
	if err := c.ws.Close(status, reason); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("websocket close: %w", err)
	}
	return nil
}

func (c *wsConn) Abort() {
	c.stopKeepAlive()
	_ = c.ws.CloseNow()
}

var (
	_ session.Conn      = (*wsConn)(nil)
	_ session.TryWriter = socketWSConn{}
)
