// Package tcpfront serves the chat to native TCP clients: the original
// Python client of the seed tutorial, the chat CLI, and anything else that
// speaks the JSON protocol (see README). Requests are JSON objects with or
// without newlines between them; responses are one object per line.
package tcpfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"chatroom/hub"
	"chatroom/hub/admission"
	"chatroom/hub/session"
	"chatroom/hub/wire"
)

// DefaultMaxRequestBytes is Options.MaxRequestBytes' default.
const DefaultMaxRequestBytes = 64 << 10

// Options configure a Server. The zero value of every field is a documented
// default.
type Options struct {
	// MaxRequestBytes bounds one request; a longer one closes the
	// connection. Default DefaultMaxRequestBytes.
	MaxRequestBytes int
	// Session tunes every connection's session. Its Flusher defaults to
	// one of the server's own (session.DefaultFlushers goroutines, stopped
	// by Shutdown).
	Session session.Options
	// Admission decides whether each new connection is served. Default: no
	// limits.
	Admission *admission.Controller
	// Logger receives lifecycle logs. Default: discard.
	Logger *slog.Logger
}

// Server accepts TCP chat clients into a hub.
type Server struct {
	hub  *hub.Hub
	opts Options
	log  *slog.Logger

	front *session.Front

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closed    bool
}

// New returns a server that admits clients to h.
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
	return &Server{hub: h, opts: opts, log: opts.Logger, front: session.NewFront(h, opts.Session),
		listeners: make(map[net.Listener]struct{})}
}

// Serve accepts connections on ln until Shutdown, then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, don't spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("tcpfront: accept: %w", err)
		}
		backoff = 0
		go s.serveConn(c)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn serves one connection on its own goroutine. The goroutine spends
// an idle connection's life parked in a read, and its stack is most of what
// an idle connection costs: the runtime halves a stack at each GC while less
// than a quarter of it is in use, so the frames below that read are kept
// small (the setup and teardown work lives in callees that have returned by
// then) to let it shrink back to 4 KiB after a burst of work (see
// session.Session.Run).
func (s *Server) serveConn(c net.Conn) {
	sess, release := s.open(c)
	if sess == nil {
		return
	}
	defer release()
	_ = s.front.Run(sess)
}

// open admits c and returns its session and the release of its admission,
// or nil when c was refused (and closed). Not inlined: its frame must not
// stay on the parked goroutine's stack (see serveConn).
//
//go:noinline
func (s *Server) open(c net.Conn) (sess *session.Session, release func()) {
	remote := c.RemoteAddr().String()
	attrs := []any{"front", "tcp", "remote", remote}
	defer func() {
		// One connection's bug must not take the server down.
		if p := recover(); p != nil {
			s.log.Error("panic serving connection", append(attrs, "panic", p)...)
			_ = c.Close()
			sess = nil
		}
	}()
	release = func() {}
	if s.opts.Admission != nil {
		var err error
		release, err = s.opts.Admission.Admit("tcp", remote)
		if err != nil {
			s.log.Info("connection refused", append(attrs, "err", err)...)
			// A refused-login reply: both client shapes understand it.
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(wire.LoginError(err.Error(), false))
			_ = c.Close()
			return nil, nil
		}
	}
	s.log.Info("connection opened", attrs...)
	opts := s.front.Options()
	opts.LogAttrs = attrs
	opts.Peer = admission.Peer(remote)
	frames := newFrameReader(c, s.opts.MaxRequestBytes)
	conn := &tcpConn{c: c, frames: frames, w: session.NewSocketWriter(c, frames.raw, nil)}
	if conn.w.CanTry() { // a plain socket (not TLS): it can write without blocking
		return s.front.NewSession(socketConn{conn}, opts), release
	}
	return s.front.NewSession(conn, opts), release
}

// Shutdown stops accepting, disconnects every client (each first gets what
// is queued for it, such as the hub's shutdown notice) and waits for them,
// aborting the rest when ctx expires.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	return s.front.Shutdown(ctx)
}

// Len returns the number of open client connections.
func (s *Server) Len() int { return s.front.Len() }

// tcpConn adapts a TCP connection to session.Conn.
type tcpConn struct {
	c      net.Conn
	frames *frameReader
	w      session.SocketWriter

	// A person at a raw terminal (see human.go): decided by the reader at
	// the first frame, then read by the writers.
	decided bool
	human   atomic.Pointer[human]
	wmu     sync.Mutex // human mode: the writers and the reader's own answers take turns
	pmu     sync.Mutex // human mode: guards kept
	kept    [][]byte   // human mode: lines a non-blocking write left for the next write
}

// socketConn is a tcpConn on a plain socket, which can also write without
// blocking (session.TryWriter) for the session's Flusher.
type socketConn struct{ *tcpConn }

// TryWriteFrames implements session.TryWriter. A person's lines are kept
// for the writer goroutine instead: they share the socket with the
// reader's own answers, which a flusher must not wait for.
func (t socketConn) TryWriteFrames(frames [][]byte) (bool, error) {
	if h := t.human.Load(); h != nil {
		lines := h.render(frames)
		t.pmu.Lock()
		t.kept = append(t.kept, lines...)
		t.pmu.Unlock()
		return false, nil
	}
	return t.w.TryWriteFrames(frames)
}

func (t *tcpConn) ReadFrame() ([]byte, error) {
	frame, err := t.frames.Next()
	if err != nil {
		return nil, readError(err)
	}
	if !t.decided || t.human.Load() != nil {
		return t.humanFrame(frame)
	}
	return frame, nil
}

// humanFrame decides, at the first frame, whether the connection is a
// person's, and for a person turns lines into requests, reading on past
// the lines it answers itself. Not inlined: an idle JSON connection's
// goroutine parks in ReadFrame, whose frame must stay small (see
// serveConn); a person's may park in here.
//
//go:noinline
func (t *tcpConn) humanFrame(frame []byte) ([]byte, error) {
	h := t.human.Load()
	if h == nil {
		if h = t.decide(frame); h == nil {
			return frame, nil
		}
	}
	for {
		req, err := h.request(frame)
		if err != nil || req != nil {
			return req, err
		}
		if frame, err = t.frames.Next(); err != nil {
			return nil, readError(err)
		}
	}
}

// decide looks at the connection's first frame: a person at a raw terminal
// starts with anything but '{'. Not inlined (see serveConn).
//
//go:noinline
func (t *tcpConn) decide(first []byte) *human {
	t.decided = true
	if b := bytes.TrimLeft(first, " \t\r\n"); len(b) > 0 && b[0] == '{' {
		return nil
	}
	h := &human{wmu: &t.wmu, out: func(b []byte) error {
		return t.w.WriteFrames([][]byte{b}, time.Now().Add(humanWriteTimeout))
	}}
	t.human.Store(h)
	return h
}

// humanWriteTimeout bounds the reader's own answers to a person.
const humanWriteTimeout = 10 * time.Second

// readError maps a frame reader's error to the session's terms. Not
// inlined, to keep ReadFrame's frame small (see serveConn).
//
//go:noinline
func readError(err error) error {
	if errors.Is(err, errFrameTooLarge) {
		return hub.Disconnect{Code: hub.CodeBadInput, Reason: err.Error()}
	}
	return err
}

// WriteFrames writes the whole batch in one write (per 32 KiB): deliveries
// per syscall, not one each.
func (t *tcpConn) WriteFrames(frames [][]byte, deadline time.Time) error {
	if h := t.human.Load(); h != nil {
		lines := h.render(frames)
		t.pmu.Lock()
		lines, t.kept = append(t.kept, lines...), nil
		t.pmu.Unlock()
		t.wmu.Lock()
		defer t.wmu.Unlock()
		return t.w.WriteFrames(lines, deadline)
	}
	return t.w.WriteFrames(frames, deadline)
}

func (t *tcpConn) Close(hub.Disconnect) error { return t.c.Close() }

func (t *tcpConn) Abort() { _ = t.c.Close() }

var (
	_ session.Conn      = (*tcpConn)(nil)
	_ session.TryWriter = socketConn{}
)
