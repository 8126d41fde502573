package tcpfront

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// errFrameTooLarge is returned when a request exceeds the size limit before
// it ends; the stream cannot be resynchronised after that.
var errFrameTooLarge = errors.New("request too large")

// frameReader splits a TCP byte stream into request frames. Requests are
// JSON objects separated by optional whitespace: the original Python client
// writes each object with no newline, two may arrive in one segment, and one
// may arrive split across segments. It tracks string and escape state to find
// where each object ends, without parsing it. Anything that does not start
// with '{' is returned as a frame up to the end of its line, so the session
// can answer it with an error and carry on.
type frameReader struct {
	r   io.Reader
	max int
	// raw is set when r is a socket: between requests the reader then holds
	// no buffer, waiting for the socket to be readable before it takes one
	// from readBufs (pooled). An idle connection costs no read buffer.
	raw     syscall.RawConn
	readRaw func(fd uintptr) bool // f.readSocket, bound once
	rawErr  error                 // readSocket's error
	pooled  *[]byte               // buf is this pool buffer (nil: buf is not pooled)

	buf []byte
	// buf[start:end] is unconsumed input; buf[start:scan] has been scanned.
	start, scan, end int
	// Scanner state for the object at buf[start:].
	depth    int
	inString bool
	escaped  bool
	junk     bool // the frame does not start with '{': read to end of line
}

// readBufSize is the size of the pooled read buffers: a typical request in
// one read.
const readBufSize = 512

var readBufs = sync.Pool{New: func() any {
	b := make([]byte, readBufSize)
	return &b
}}

func newFrameReader(r io.Reader, max int) *frameReader {
	f := &frameReader{r: r, max: max}
	if sc, ok := r.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			f.raw = raw
			f.readRaw = f.readSocket
		}
	}
	return f
}

// Next returns the next frame, valid until the following call.
func (f *frameReader) Next() ([]byte, error) {
	f.release()
	for {
		if frame, ok := f.scanFrame(); ok {
			if len(frame) > f.max {
				return nil, f.tooLarge()
			}
			return frame, nil
		}
		// An unfinished frame this long can only end up over the limit.
		if f.scan-f.start >= f.max {
			return nil, f.tooLarge()
		}
		if err := f.fill(); err != nil {
			return nil, err
		}
	}
}

// tooLarge is the error for a request over the limit. It is not inlined so
// that fmt's frame stays off the read path (see Server.serveConn).
//
//go:noinline
func (f *frameReader) tooLarge() error {
	return fmt.Errorf("%w: over %d bytes", errFrameTooLarge, f.max)
}

// fill reads more input. An idle connection's goroutine is parked in here,
// so it keeps its own frame small (see Server.serveConn).
func (f *frameReader) fill() error {
	if f.raw != nil && f.buf == nil {
		return f.fillFromSocket()
	}
	if f.end == len(f.buf) || f.start > 0 && f.start == f.end {
		if err := f.makeRoom(); err != nil {
			return err
		}
	}
	n, err := f.r.Read(f.buf[f.end:])
	f.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// makeRoom compacts the buffer or grows it (up to max plus one read) so that
// there is room to read into. Not inlined, to keep fill's frame small.
//
//go:noinline
func (f *frameReader) makeRoom() error {
	if f.start > 0 && (f.start == f.end || f.end == len(f.buf)) {
		n := copy(f.buf, f.buf[f.start:f.end])
		f.scan -= f.start
		f.end = n
		f.start = 0
	}
	if f.end == len(f.buf) {
		size := max(2*len(f.buf), 512)
		size = min(size, f.max+512)
		if size <= len(f.buf) {
			return f.tooLarge()
		}
		grown := make([]byte, size)
		copy(grown, f.buf[:f.end])
		f.buf = grown
		if f.pooled != nil {
			readBufs.Put(f.pooled)
			f.pooled = nil
		}
	}
	return nil
}

// scanFrame advances the scan over buffered input and returns a complete
// frame if one ends there.
func (f *frameReader) scanFrame() ([]byte, bool) {
	for f.scan < f.end {
		c := f.buf[f.scan]
		f.scan++
		switch {
		case f.scan-1 == f.start: // first byte of a frame
			switch {
			case isSeparator(c):
				f.start++ // skip separators between objects
			case c == '{':
				f.depth = 1
			default:
				f.junk = true
			}
		case f.junk:
			if c == '\n' {
				return f.take(), true
			}
		case f.inString:
			switch {
			case f.escaped:
				f.escaped = false
			case c == '\\':
				f.escaped = true
			case c == '"':
				f.inString = false
			}
		case c == '"':
			f.inString = true
		case c == '{' || c == '[':
			f.depth++
		case c == '}' || c == ']':
			f.depth--
			if f.depth == 0 {
				return f.take(), true
			}
		}
	}
	return nil, false
}

func isSeparator(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

func (f *frameReader) take() []byte {
	frame := f.buf[f.start:f.scan]
	f.start = f.scan
	f.depth, f.inString, f.escaped, f.junk = 0, false, false, false
	return frame
}

// release gives up the buffer once everything in it is used: a socket's
// goes back to the pool (or, grown by a large request, to the collector);
// another reader keeps a small one. Call it only after the last frame has
// been used.
func (f *frameReader) release() {
	// Separators after the last frame (a client's newline) are used too.
	for f.scan == f.start && f.start < f.end && isSeparator(f.buf[f.start]) {
		f.start++
		f.scan++
	}
	if f.start != f.end || f.buf == nil || f.raw == nil && len(f.buf) <= 4096 {
		return
	}
	if f.pooled != nil {
		readBufs.Put(f.pooled)
		f.pooled = nil
	}
	f.buf, f.start, f.scan, f.end = nil, 0, 0, 0
}

// fillFromSocket waits until the socket has input, then reads it into a
// pooled buffer. The reader holds no buffer while it waits.
func (f *frameReader) fillFromSocket() error {
	if err := f.raw.Read(f.readRaw); err != nil {
		return err
	}
	if f.rawErr != nil {
		err := f.rawErr
		f.rawErr = nil
		return err
	}
	return nil
}

// readSocket is the raw read's callback: it reads what the socket has into
// a pooled buffer, or reports false (wait for input) when it has nothing.
func (f *frameReader) readSocket(fd uintptr) bool {
	bp := readBufs.Get().(*[]byte)
	for {
		n, err := syscall.Read(int(fd), *bp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			readBufs.Put(bp)
			return false
		case err != nil:
			readBufs.Put(bp)
			f.rawErr = os.NewSyscallError("read", err)
		case n == 0:
			readBufs.Put(bp)
			f.rawErr = io.EOF
		default:
			f.buf, f.pooled = *bp, bp
			f.start, f.scan, f.end = 0, 0, n
		}
		return true
	}
}
