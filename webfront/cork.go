package webfront

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// The WebSocket library writes each message with its own flush, so a batch
// of N messages would cost N write syscalls. corkedWriter hands the library
// a hijacked connection that can hold writes back: the session corks it,
// writes a batch of messages, and uncorks, so the batch leaves in one write.
// It also lets the connection keep small buffers while idle.

// Buffer sizes handed to the WebSocket library for each connection, in
// place of net/http's 4 KiB each: a reader big enough for a typical request
// in one read, a writer that only has to hold a frame header or a small
// message before it flushes into the cork.
const (
	wsReadBuffer  = 1024
	wsWriteBuffer = 512
	// corkKeep bounds the cork buffer kept between batches.
	corkKeep = 4 << 10
)

// corkConn is a net.Conn whose writes can be held back and sent in one go.
type corkConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// cork holds writes back until uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was held back, in one write, by deadline.
func (c *corkConn) uncork(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > corkKeep {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// corkingResponseWriter makes Hijack return a corkConn with small buffers.
type corkingResponseWriter struct {
	http.ResponseWriter
	conn *corkConn
}

func (w *corkingResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("webfront: %T cannot hijack", w.ResponseWriter)
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Keep whatever the client already sent after its request.
	pending, err := brw.Reader.Peek(brw.Reader.Buffered())
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("webfront: hijack: %w", err)
	}
	w.conn = &corkConn{Conn: conn}
	// The library reads what is already buffered (Peek(Buffered())) before
	// it rebuilds the reader on the connection, so the pending bytes must
	// sit in the new reader's buffer, not merely be readable from it.
	r := bufio.NewReaderSize(io2Reader(pending, w.conn), max(wsReadBuffer, len(pending)))
	if len(pending) > 0 {
		if _, err := r.Peek(len(pending)); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("webfront: hijack: %w", err)
		}
	}
	return w.conn, bufio.NewReadWriter(r, bufio.NewWriterSize(w.conn, wsWriteBuffer)), nil
}
