package session

import (
	"fmt"
	"io"
	"sync"
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
