package webfront

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"chatroom/hub/admission"
)

// Listener wraps ln, when the server has an admission controller, so that every connection it accepts counts against
// the admission controller's limits (total, per IP, per-IP rate) from accept to close, whatever it
// carries: the page, health checks, metrics or a WebSocket. A keep-alive
// HTTP connection holds a file descriptor just as a chat connection does,
// so counting only WebSocket upgrades would let one address exhaust the
// process's descriptors with idle HTTP connections. A refused connection
// is answered with a bare 429 (per-IP limits) or 503 (server full) and
// closed, without reading its request.
// Serve the HTTP server on the listener it returns (under TLS, if any).
func (s *Server) Listener(ln net.Listener) net.Listener {
	if s.opts.Admission == nil {
		return ln
	}
	return &admitListener{Listener: ln, admit: s.opts.Admission, log: s.log, refusing: make(chan struct{}, maxRefusing)}
}

type admitListener struct {
	net.Listener
	admit    *admission.Controller
	log      *slog.Logger
	refusing chan struct{} // a place for each refused connection being answered
}

// Accept returns the next admitted connection; refused ones are answered
// and closed here, so the HTTP server never sees them.
func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, err := l.admit.Admit("http", c.RemoteAddr().String())
		if err != nil {
			l.log.Info("connection refused", "front", "http", "remote", c.RemoteAddr().String(), "err", err)
			l.refuse(c, err)
			continue
		}
		return &admittedConn{Conn: c, release: release}, nil
	}
}

// refuse answers a refused connection in the background and closes it.
// It reads the request's head first (briefly), since an HTTP client that
// gets an answer before it has finished sending may take it for a broken
// connection rather than a refusal. At most maxRefusing connections are
// answered at once, each within refuseTime: past that, under a flood of
// connections, they are closed unanswered, so refusing never holds more
// than a few descriptors.
func (l *admitListener) refuse(c net.Conn, err error) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		status := "429 Too Many Requests"
		if errors.Is(err, admission.ErrTooManyConns) {
			status = "503 Service Unavailable"
		}
		_ = c.SetDeadline(time.Now().Add(refuseTime))
		r := bufio.NewReaderSize(c, 1024)
		for {
			line, rerr := r.ReadSlice('\n')
			if rerr != nil || len(bytes.TrimSpace(line)) == 0 {
				break // the head is over (or never came): answer anyway
			}
		}
		text := err.Error() + "\n"
		_, _ = c.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(text)) + "\r\n\r\n" + text))
	}()
}

// Bounds on answering refused connections.
const (
	maxRefusing = 64
	refuseTime  = 250 * time.Millisecond
)

// admittedConn releases its admission when closed, once.
type admittedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn exposes the socket underneath, so that a WebSocket on it can
// still be written without blocking (session.SocketWriter).
func (c *admittedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("webfront: connection has no raw socket")
	}
	return sc.SyscallConn()
}

var _ syscall.Conn = (*admittedConn)(nil)
