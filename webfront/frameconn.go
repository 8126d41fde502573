package webfront

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"chatroom/hub/session"
)

// The WebSocket library writes each message with its own lock, context and
// flush, so a batch of N messages would cost N write syscalls. The web front
// instead hands the library a hijacked connection of its own (frameConn)
// through which it writes a writer's whole batch of messages as text frames
// in one write, while the library still reads, answers pings and closes. It
// also gives each connection small buffers instead of net/http's 4 KiB ones.

// Buffer sizes handed to the WebSocket library for each connection, in
// place of net/http's 4 KiB each: a reader big enough for a typical request
// in one read, a writer that only has to hold a frame header or a small
// message before it flushes.
const (
	wsReadBuffer  = 1024
	wsWriteBuffer = 512
)

// frameConn is the hijacked connection: the library's writes and our
// batches go through it under one lock, so whole writes never interleave.
type frameConn struct {
	net.Conn

	mu sync.Mutex // serialises writes (held during them: it is this socket's own write lock, never a hub or queue lock); guards w's deadline
	// w writes the session's batches as text frames. What a
	// tryWriteTextMessages leaves in it is the session writer's.
	w session.SocketWriter
}

// Write is the library's path (pongs, pings, the close frame): one whole
// write. It clears the deadline a batch left, which may have passed; the
// library bounds its own writes with their contexts.
func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.w.ClearDeadline(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// writeTextMessages writes each payload as an unfragmented, unmasked
// WebSocket text frame (server to client), all in one write (per 32 KiB), by
// deadline. It bypasses the library's per-message write (a lock, a context
// and a flush each); the library's own frames go through Write above, whole,
// under the same lock, so frames never interleave.
func (c *frameConn) writeTextMessages(payloads [][]byte, deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.WriteFrames(payloads, deadline)
}

// tryWriteTextMessages writes payloads as writeTextMessages does, but with
// one write that does not wait, and only if the library is not writing at
// the moment; what does not go out now is kept for the next
// writeTextMessages. It reports whether everything went.
func (c *frameConn) tryWriteTextMessages(payloads [][]byte) (bool, error) {
	if !c.mu.TryLock() {
		c.w.Keep(payloads)
		return false, nil
	}
	defer c.mu.Unlock()
	return c.w.TryWriteFrames(payloads)
}

// appendTextFrameHeader appends the header of a final, unmasked text frame
// carrying n bytes (RFC 6455 section 5.2).
func appendTextFrameHeader(b []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n < 1<<16:
		return append(b, finText, 126, byte(n>>8), byte(n))
	default:
		return append(b, finText, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// hijackingResponseWriter makes Hijack return a frameConn with small buffers.
type hijackingResponseWriter struct {
	http.ResponseWriter
	conn *frameConn
}

func (w *hijackingResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("webfront: %T cannot hijack", w.ResponseWriter)
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The HTTP server's read and write timeouts were for the request: the
	// WebSocket bounds its own reads (pings) and writes (per write).
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("webfront: hijack: %w", err)
	}
	// Keep whatever the client already sent after its request.
	pending, err := brw.Reader.Peek(brw.Reader.Buffered())
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("webfront: hijack: %w", err)
	}
	var raw syscall.RawConn
	if sc, ok := conn.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn() // nil on error: no non-blocking writes
	}
	w.conn = &frameConn{Conn: conn, w: session.NewSocketWriter(conn, raw, appendTextFrameHeader)}
	// The library reads what is already buffered (Peek(Buffered())) before
	// it rebuilds the reader on the connection, so the pending bytes must
	// sit in the new reader's buffer, not merely be readable from it.
	var src io.Reader = w.conn
	if len(pending) > 0 {
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pending)), w.conn)
	}
	r := bufio.NewReaderSize(src, max(wsReadBuffer, len(pending)))
	if len(pending) > 0 {
		if _, err := r.Peek(len(pending)); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("webfront: hijack: %w", err)
		}
	}
	return w.conn, bufio.NewReadWriter(r, bufio.NewWriterSize(w.conn, wsWriteBuffer)), nil
}
