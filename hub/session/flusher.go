package session

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"

	"chatroom/hub"
	"chatroom/hub/wire"
)

// TryWriter is a Conn that can also write without blocking. Fronts whose
// connections are plain sockets implement it.
type TryWriter interface {
	// TryWriteFrames writes frames, in order, as far as the connection
	// takes them at once, and keeps the rest to write first on the next
	// WriteFrames. It reports whether everything was written. It never
	// blocks.
	TryWriteFrames(frames [][]byte) (done bool, err error)
}

// Flusher writes sessions' queues to their connections from a few
// long-lived goroutines without blocking: a message to a thousand members is
// a thousand writes spread over the flushers, with no goroutine started (or
// stack grown) per delivery. A session whose socket
// would block, or that has more to do than a plain write (pacing, closing),
// is handed to a writer goroutine of its own, as it is without a Flusher.
//
// Create it with NewFlusher, share it between a front's sessions
// (Options.Flusher) and Close it once they have all ended.
type Flusher struct {
	work chan *Session

	mu     sync.RWMutex // guards closed against sends on work
	closed bool
	wg     sync.WaitGroup
}

// flusherBacklog bounds the sessions waiting for a flusher; past it, a
// session gets a writer goroutine instead (the hub never waits).
const flusherBacklog = 8192

// NewFlusher starts workers goroutines (0: DefaultFlushers()).
func NewFlusher(workers int) *Flusher {
	if workers <= 0 {
		workers = DefaultFlushers()
	}
	f := &Flusher{work: make(chan *Session, flusherBacklog)}
	for range workers {
		f.wg.Go(f.run)
	}
	return f
}

// DefaultFlushers is half the CPUs, at least one. A socket write is mostly
// kernel work (on loopback it includes the receiver's side of TCP), and the
// other half of the machine is left for reading requests and the kernel's
// network processing: on the 2-core reference box one flusher delivered
// more per second, at less CPU per delivery and a lower p99, than two.
func DefaultFlushers() int {
	return max(1, runtime.GOMAXPROCS(0)/2)
}

func (f *Flusher) run() {
	for s := range f.work {
		s.flush(f)
	}
}

// push queues s for a flush, or reports false when it cannot (closed, or
// too far behind) and the caller must write some other way.
func (f *Flusher) push(s *Session) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return false
	}
	select {
	case f.work <- s:
		return true
	default:
		return false
	}
}

// Close flushes the sessions already queued, then stops the workers and
// waits for them. Sessions delivered to afterwards write on goroutines of
// their own.
func (f *Flusher) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.work)
	f.mu.Unlock()
	f.wg.Wait()
}

// flush writes what is queued without blocking, on a goroutine of f's. A
// socket that does not take it all at once, a failed write, or a session
// that is closing hands over to a writer goroutine of the session's own.
// While the flush runs, s.writing keeps any other writer away.
func (s *Session) flush(f *Flusher) {
	s.mu.Lock()
	if s.closing != nil || !s.extended || len(s.items) == 0 {
		s.mu.Unlock()
		go s.writeLoop(false)
		return
	}
	batch := s.items
	s.items, s.spare = s.spare, nil
	s.bytes, s.replyBytes = 0, 0
	s.mu.Unlock()
	s.opts.Observer.Drained(len(batch))

	done, err := s.tryWriteBatch(batch)
	clear(batch)

	s.mu.Lock()
	s.recycleLocked(batch)
	switch {
	case err != nil:
		d := hub.Disconnect{Code: hub.CodeWriteFailed, Reason: "write failed"}
		if errors.Is(err, errPanic) {
			d = hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}
		}
		s.closeLocked(d, true)
		s.mu.Unlock()
		s.logAt(slog.LevelDebug, "write failed", "err", err)
		s.conn.Abort()
		go s.writeLoop(false) // closes the connection and marks the session done
	case !done:
		// The socket is full: the rest needs a writer that can wait.
		s.mu.Unlock()
		go s.writeLoop(true)
	case len(s.items) == 0 && s.closing == nil:
		s.writing = false
		s.mu.Unlock()
	default:
		s.mu.Unlock()
		if !f.push(s) { // more came meanwhile: back in line
			go s.writeLoop(false)
		}
	}
}

// tryWriteBatch encodes batch and writes it without blocking. It is the
// part of a flush that touches what clients sent (their events' text and
// names), on a goroutine every session shares: a panic here, a bug that one
// client's data triggered, must end that client's connection and nobody
// else's. So it is recovered, logged with its stack, and returned as an
// error wrapping errPanic, which the flush handles like a failed write.
func (s *Session) tryWriteBatch(batch []item) (done bool, err error) {
	scratch := framesPool.Get().(*[][]byte)
	frames := (*scratch)[:0]
	defer func() {
		if p := recover(); p != nil {
			s.logAt(slog.LevelError, "panic writing to connection", "panic", p, "stack", string(debug.Stack()))
			done, err = false, fmt.Errorf("%w: %v", errPanic, p)
		}
		clear(frames)
		*scratch = frames[:0]
		framesPool.Put(scratch)
	}()
	for _, it := range batch {
		if it.ev == nil {
			frames = append(frames, it.frames...)
		} else {
			frames = append(frames, wire.EncodeEvent(it.ev, true)...)
		}
	}
	s.opts.Observer.Wrote(len(frames))
	return s.try.TryWriteFrames(frames)
}

// errPanic marks a writer's error as a recovered panic.
var errPanic = errors.New("panic")
