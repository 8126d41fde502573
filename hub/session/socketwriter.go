package session

import (
	"fmt"
	"net"
	"syscall"
	"time"
)

// SocketWriter is the write half of a front's Conn over a socket: it writes
// a writer's batches of frames (WriteFrames, TryWriteFrames), and it keeps
// what a non-blocking write could not send, to send it first next time. Its
// methods belong to the session's writer, one call at a time (the session
// guarantees that); a front whose socket has other writers too (the
// WebSocket library's control frames) serialises them around it.
type SocketWriter struct {
	conn   net.Conn
	raw    syscall.RawConn                // nil: TryWriteFrames cannot write (TLS)
	header func(dst []byte, n int) []byte // appends what precedes each frame, if anything

	deadline time.Time // the write deadline in force (zero: none)
	pending  []byte    // what TryWriteFrames left: written first
}

// NewSocketWriter returns a writer to conn. raw, when not nil, is conn's raw
// connection, for non-blocking writes. header, when not nil, appends what
// goes before each frame (a WebSocket frame header).
func NewSocketWriter(conn net.Conn, raw syscall.RawConn, header func(dst []byte, frameLen int) []byte) SocketWriter {
	return SocketWriter{conn: conn, raw: raw, header: header}
}

// CanTry reports whether TryWriteFrames can write: the connection is a
// plain socket.
func (w *SocketWriter) CanTry() bool { return w.raw != nil }

// WriteFrames writes what an earlier TryWriteFrames left, then frames, in as
// few writes as the buffer allows, giving up at deadline.
func (w *SocketWriter) WriteFrames(frames [][]byte, deadline time.Time) error {
	// Moving the deadline costs a timer update per write; move it only when
	// it has fallen more than a second behind (or must come sooner), so the
	// effective timeout is between the requested one and a second less.
	if w.deadline.IsZero() || deadline.Before(w.deadline) || deadline.Sub(w.deadline) > time.Second {
		if err := w.conn.SetWriteDeadline(deadline); err != nil {
			return fmt.Errorf("set write deadline: %w", err)
		}
		w.deadline = deadline
	}
	if len(w.pending) > 0 {
		if _, err := w.conn.Write(w.pending); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		w.pending = nil
	}
	return WriteBatch(w.conn, frames, w.header)
}

// TryWriteFrames implements TryWriter: one write that does not wait; what
// the socket does not take is kept for the next WriteFrames.
func (w *SocketWriter) TryWriteFrames(frames [][]byte) (bool, error) {
	if len(w.pending) > 0 || w.raw == nil {
		w.Keep(frames)
		return false, nil
	}
	rest, err := TryWriteBatch(w.raw, frames, w.header)
	w.pending = rest
	return rest == nil, err
}

// Keep adds frames to what the next WriteFrames writes first, without
// writing now (for when the socket is busy with another writer).
func (w *SocketWriter) Keep(frames [][]byte) {
	for _, f := range frames {
		if w.header != nil {
			w.pending = w.header(w.pending, len(f))
		}
		w.pending = append(w.pending, f...)
	}
}

// ClearDeadline lifts the write deadline, for a write of another writer's
// that bounds itself otherwise.
func (w *SocketWriter) ClearDeadline() error {
	if w.deadline.IsZero() {
		return nil
	}
	if err := w.conn.SetWriteDeadline(time.Time{}); err != nil {
		return err
	}
	w.deadline = time.Time{}
	return nil
}
