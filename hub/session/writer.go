package session

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"chatroom/hub"
	"chatroom/hub/wire"
)

// The writer hand-off. At most one writer owns a session's queue at a
// time, and Session.writing says one does; it is set when a delivery finds
// the queue idle and cleared only by a writer that finds it empty (and the
// session not closing), both under Session.mu.
//
//	who has the queue           on                            hands it to
//	nobody (writing false)      a delivery or reply           a Flusher's turn (extended client,
//	                                                          plain socket, not closing, Flusher has
//	                                                          room), else writeLoop(false)
//	a Flusher's turn (flush)    queue empty, not closing      nobody
//	                            more queued meanwhile         another Flusher turn, else writeLoop(false)
//	                            socket full (partial write)   writeLoop(true): writes what was left first
//	                            write failed, or a panic      writeLoop(false): closes the connection
//	                            closing, original client,     writeLoop(false)
//	                            or nothing to write
//	writeLoop                   queue empty, not closing      nobody (after yielding once)
//	                            closing, queue empty          closes the connection; the session is done
//
// writeLoop is the only writer that may wait on the socket (up to
// WriteTimeout), so a slow client holds up its own goroutine only.

// startWriterLocked starts a writer unless one is running: a Flusher's
// turn where there is one and all there is to do is a plain write,
// otherwise a writer goroutine. A writer goroutine lives only while there is
// something to write, so an idle connection costs one goroutine (its
// reader), not two.
func (s *Session) startWriterLocked() {
	if s.writing {
		return
	}
	s.writing = true
	if s.try != nil && s.extended && s.closing == nil && s.opts.Flusher.push(s) {
		return
	}
	go s.writeLoop(false)
}

// writeLoop drains the queue to the connection, then exits; once the
// session is closing and the queue is drained it closes the connection.
// For an extended client everything queued at one go goes out in one write;
// an original-protocol client gets one object per write, paced. Only one
// writer runs at a time (Session.writing). With pending, it first writes
// what a flush left in the connection.
func (s *Session) writeLoop(pending bool) {
	defer func() {
		if p := recover(); p != nil {
			s.logAt(slog.LevelError, "panic writing to connection", "panic", p, "stack", string(debug.Stack()))
			s.Abort()
			s.mu.Lock()
			s.closeLocked(hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}, true)
			s.mu.Unlock()
			s.closeConn(hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}, false)
		}
	}()
	var (
		batch    []item
		lingered bool // yielded once with nothing to write
	)
	scratch := framesPool.Get().(*[][]byte)
	defer framesPool.Put(scratch)
	frames := (*scratch)[:0]
	if pending {
		s.write(nil) // on failure the session is closing: the loop closes the connection
	}
	for {
		s.mu.Lock()
		if batch != nil {
			s.recycleLocked(batch)
			batch = nil
		}
		if len(s.items) == 0 && s.closing == nil && !lingered {
			// Under load the next delivery is usually a moment away: yield
			// once before exiting rather than pay for a new goroutine.
			s.mu.Unlock()
			lingered = true
			runtime.Gosched()
			continue
		}
		if len(s.items) == 0 {
			if s.closing == nil {
				s.writing = false // idle: the next enqueue starts a new writer
				s.mu.Unlock()
				return
			}
			d, extended := *s.closing, s.extended
			s.mu.Unlock()
			s.closeConn(d, extended)
			return
		}
		batch, s.items, s.spare = s.items, s.spare, nil
		lingered = false
		s.bytes, s.replyBytes = 0, 0
		extended := s.extended
		s.mu.Unlock()
		s.opts.Observer.Drained(len(batch))

		frames = frames[:0]
		ok := true
		for _, it := range batch {
			if !ok {
				break
			}
			if it.ev == nil {
				frames = append(frames, it.frames...)
				continue
			}
			if it.ev.Kind == hub.KindWelcome && !extended {
				// The login reply goes alone, and then nothing for a while.
				ok = s.writePaced(frames, &s.notBefore) && s.writePaced(wire.EncodeEvent(it.ev, false), &s.notBefore)
				s.notBefore = time.Now().Add(s.opts.LoginGap)
				frames = frames[:0]
				continue
			}
			frames = append(frames, wire.EncodeEvent(it.ev, extended)...)
		}
		clear(batch) // drop references to delivered events
		if ok && extended && len(frames) > 0 {
			ok = s.write(frames)
		} else if ok && !extended {
			ok = s.writePaced(frames, &s.notBefore)
		}
		clear(frames)
		*scratch = frames[:0]
		if !ok {
			// The session is now closing with the queue dropped: the next
			// round closes the connection.
			continue
		}
	}
}

// framesPool holds writers' scratch lists of frames, shared by all
// sessions since a writer lives only while it has something to write.
var framesPool = sync.Pool{New: func() any { return new([][]byte) }}

// closeConn tells the client why it is being disconnected, where that helps,
// closes the connection and marks the session done.
func (s *Session) closeConn(d hub.Disconnect, extended bool) {
	defer s.doneOnce.Do(func() { close(s.done) })
	if s.aborted.Load() {
		return
	}
	switch d.Code {
	case hub.CodeSlowConsumer, hub.CodeBadInput, hub.CodeTimeout, hub.CodeAbuse:
		var last [][]byte
		if extended {
			last = [][]byte{wire.Error("", d.Reason)}
		} else {
			last = wire.Notice("disconnected: "+d.Reason, false)
		}
		// Short deadline: a slow consumer may never read it.
		_ = s.conn.WriteFrames(last, time.Now().Add(lastWordsGrace))
	}
	if err := s.conn.Close(d); err != nil {
		s.logAt(slog.LevelDebug, "close failed", "err", err)
	}
}

// writePaced writes frames one per write, none before *notBefore and each
// PushGap after the last, for original-protocol clients.
func (s *Session) writePaced(frames [][]byte, notBefore *time.Time) bool {
	for i := range frames {
		if wait := time.Until(*notBefore); wait > 0 && !s.pause(wait) {
			return false
		}
		if !s.write(frames[i : i+1]) {
			return false
		}
		*notBefore = time.Now().Add(s.opts.PushGap)
	}
	return true
}

// write writes frames; on failure it closes the session and reports false.
func (s *Session) write(frames [][]byte) bool {
	if s.aborted.Load() {
		return false
	}
	deadline := time.Now().Add(s.opts.WriteTimeout)
	s.opts.Observer.Wrote(len(frames))
	if err := s.conn.WriteFrames(frames, deadline); err != nil {
		d := hub.Disconnect{Code: hub.CodeWriteFailed, Reason: "write failed"}
		s.mu.Lock()
		s.closeLocked(d, true)
		s.mu.Unlock()
		s.logAt(slog.LevelDebug, "write failed", "err", err)
		s.conn.Abort()
		return false
	}
	return true
}

// pause waits d, and reports whether the session may still write (it was
// not aborted meanwhile; d is at most LoginGap, so a brief wait).
func (s *Session) pause(d time.Duration) bool {
	time.Sleep(d)
	return !s.aborted.Load()
}
