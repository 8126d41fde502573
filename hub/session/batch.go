package session

import (
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// batchBufSize is the size of the pooled buffers WriteBatch assembles writes
// in: big enough that a busy writer's syscalls each carry many deliveries.
const batchBufSize = 32 << 10

// maxFrameHeader bounds what a WriteBatch header function appends.
const maxFrameHeader = 16

var batchBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, batchBufSize)
	return &b
}}

// WriteBatch writes frames to w, in order, in as few writes as it can: it
// copies them into a pooled buffer and writes the buffer whenever it fills,
// so a batch costs one syscall per 32 KiB rather than one per frame. A frame
// too big for the buffer is written on its own. header, when not nil,
// appends what goes before each frame (at most 16 bytes, such as a WebSocket
// frame header) to its first argument.
//
// Copying costs less than it saves: nothing is held between batches, so an
// idle connection keeps no write buffer, and unlike writev through
// net.Buffers the connection does not cache an iovec array the size of its
// largest batch for the rest of its life.
func WriteBatch(w io.Writer, frames [][]byte, header func(dst []byte, frameLen int) []byte) error {
	bp := batchBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		*bp = buf[:0]
		batchBufs.Put(bp)
	}()
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	for _, f := range frames {
		if header != nil {
			if len(buf)+maxFrameHeader > cap(buf) {
				if err := flush(); err != nil {
					return fmt.Errorf("write: %w", err)
				}
			}
			buf = header(buf, len(f))
		}
		if len(buf)+len(f) > cap(buf) {
			if err := flush(); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if len(f) > cap(buf) {
				if _, err := w.Write(f); err != nil {
					return fmt.Errorf("write: %w", err)
				}
				continue
			}
		}
		buf = append(buf, f...)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// rawWrite is one non-blocking write in progress: pooled, with its callback
// bound once, so that TryWriteBatch allocates nothing.
type rawWrite struct {
	buf   []byte
	n     int
	err   error
	write func(fd uintptr) bool
}

var rawWrites = sync.Pool{New: func() any {
	w := &rawWrite{buf: make([]byte, 0, batchBufSize)}
	w.write = w.writeFD
	return w
}}

func (w *rawWrite) writeFD(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.buf)
		if w.err != syscall.EINTR {
			return true // done, or EAGAIN: either way, do not wait
		}
	}
}

// TryWriteBatch writes frames (each after its header, as WriteBatch does)
// to the socket behind rc in one write that does not wait: it returns what
// the socket did not take at once (nil when it took everything), for the
// caller to write later, before anything else.
func TryWriteBatch(rc syscall.RawConn, frames [][]byte, header func(dst []byte, frameLen int) []byte) (rest []byte, err error) {
	w := rawWrites.Get().(*rawWrite)
	defer func() {
		if cap(w.buf) > 4*batchBufSize {
			w.buf = make([]byte, 0, batchBufSize) // a huge batch: do not keep its memory
		}
		w.buf, w.err = w.buf[:0], nil
		rawWrites.Put(w)
	}()
	for _, f := range frames {
		if header != nil {
			w.buf = header(w.buf, len(f))
		}
		w.buf = append(w.buf, f...)
	}
	if len(w.buf) == 0 {
		return nil, nil
	}
	if err := rc.Write(w.write); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	switch {
	case w.err == syscall.EAGAIN:
		w.n = 0
	case w.err != nil:
		return nil, fmt.Errorf("write: %w", os.NewSyscallError("write", w.err))
	}
	if w.n == len(w.buf) {
		return nil, nil
	}
	return append([]byte(nil), w.buf[w.n:]...), nil
}
