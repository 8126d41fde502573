package tcpfront

import (
	"errors"
	"fmt"
	"io"
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
	buf []byte
	// buf[start:end] is unconsumed input; buf[start:scan] has been scanned.
	start, scan, end int
	// Scanner state for the object at buf[start:].
	depth    int
	inString bool
	escaped  bool
	junk     bool // the frame does not start with '{': read to end of line
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: r, max: max}
}

// Next returns the next frame, valid until the following call.
func (f *frameReader) Next() ([]byte, error) {
	f.release()
	for {
		if frame, ok := f.scanFrame(); ok {
			if len(frame) > f.max {
				return nil, fmt.Errorf("%w: over %d bytes", errFrameTooLarge, f.max)
			}
			return frame, nil
		}
		// An unfinished frame this long can only end up over the limit.
		if f.scan-f.start >= f.max {
			return nil, fmt.Errorf("%w: over %d bytes", errFrameTooLarge, f.max)
		}
		if err := f.fill(); err != nil {
			return nil, err
		}
	}
}

// fill reads more input, compacting or growing the buffer (up to max plus one
// read) as needed.
func (f *frameReader) fill() error {
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
			return fmt.Errorf("%w: over %d bytes", errFrameTooLarge, f.max)
		}
		grown := make([]byte, size)
		copy(grown, f.buf[:f.end])
		f.buf = grown
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

// scanFrame advances the scan over buffered input and returns a complete
// frame if one ends there.
func (f *frameReader) scanFrame() ([]byte, bool) {
	for f.scan < f.end {
		c := f.buf[f.scan]
		f.scan++
		switch {
		case f.scan-1 == f.start: // first byte of a frame
			switch c {
			case ' ', '\t', '\r', '\n':
				f.start++ // skip separators between objects
			case '{':
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

func (f *frameReader) take() []byte {
	frame := f.buf[f.start:f.scan]
	f.start = f.scan
	f.depth, f.inString, f.escaped, f.junk = 0, false, false, false
	return frame
}

// release drops a buffer that a large request grew, once it is empty, so an
// idle connection keeps only a small one. Call it only after the last frame
// has been used.
func (f *frameReader) release() {
	if f.start == f.end && len(f.buf) > 4096 {
		f.buf, f.start, f.scan, f.end = nil, 0, 0, 0
	}
}
