package hub

import (
	"errors"
	"fmt"
	"sync"
)

// Journal makes sequenced events durable before anyone sees them: with
// one, a MemoryBroker delivers an event (and so acknowledges a message to
// its sender, whose echo is the acknowledgement) only once it is written.
// A durable store (hub/sqlite) implements it.
type Journal interface {
	// LastSeq returns the highest seq written for room (0: none), so that a
	// room's order continues across restarts.
	LastSeq(room string) (uint64, error)
	// Write stores events durably, in order, all or none. It is called from
	// one goroutine at a time, with batches as large as the load makes them
	// (group commit).
	Write(events []*Event) error
}

// ErrBrokerClosed is returned by Publish once the broker is closed.
var ErrBrokerClosed = errors.New("broker: closed")

// ErrNotSaved is what Publish returns (wrapping the Journal's error, which
// goes to the log, not to clients) when an event could not be written: it
// was not delivered, and its seq goes to the next one.
var ErrNotSaved = errors.New("could not save the message: try again later")

// notSaved is ErrNotSaved with the journal's error behind it.
type notSaved struct{ cause error }

func (e notSaved) Error() string   { return ErrNotSaved.Error() }
func (e notSaved) Unwrap() []error { return []error{ErrNotSaved, e.cause} }

// pending is an event on its way through a journaled broker.
type pending struct {
	ev   *Event
	err  error
	done chan error // receives err once the event is delivered or refused
}

// NewJournaledBroker returns a MemoryBroker that writes every sequenced
// event to j before delivering it. Publish returns once the event is
// delivered (or refused: the error wraps ErrNotSaved). Events flow through
// two goroutines, so that writing one batch overlaps delivering the last:
//
//   - the writer takes everything published since its last write, writes
//     the sequenced events in one Write (group commit), and hands the
//     batch on; if the write fails, it refuses that batch and everything
//     sequenced after it, and winds the rooms' counters back, so no seq is
//     skipped or given twice;
//   - the deliverer delivers batches in order, one event at a time.
//
// Close stops both, after what was published has been written and
// delivered.
func NewJournaledBroker(j Journal) *MemoryBroker {
	b := &MemoryBroker{journal: j, committed: make(map[string]uint64), toDeliver: make(chan []*pending, 64)}
	b.wake = sync.NewCond(&b.mu)
	b.workers.Go(b.writeLoop)
	b.workers.Go(b.deliverLoop)
	return b
}

// publishJournaled sequences ev and queues it for the writer; b.mu is held
// and is released here. It waits for the event's fate.
func (b *MemoryBroker) publishJournaled(ev *Event) error {
	if b.closed {
		b.mu.Unlock()
		return ErrBrokerClosed
	}
	if Sequenced(ev.Kind) {
		if err := b.sequenceJournaledLocked(ev); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	p := &pending{ev: ev, done: make(chan error, 1)}
	b.queue = append(b.queue, p)
	b.wake.Signal()
	b.mu.Unlock()
	return <-p.done
}

// sequenceJournaledLocked gives ev the room's next seq, reading where the
// room's order stands from the journal the first time.
func (b *MemoryBroker) sequenceJournaledLocked(ev *Event) error {
	b.seqMu.Lock()
	defer b.seqMu.Unlock()
	if b.seq == nil {
		b.seq = make(map[string]uint64)
	}
	last, ok := b.seq[ev.Room]
	if !ok {
		var err error
		if last, err = b.journal.LastSeq(ev.Room); err != nil {
			return notSaved{err}
		}
		b.committed[ev.Room] = last
	}
	b.seq[ev.Room] = last + 1
	ev.Seq = last + 1
	return nil
}

func (b *MemoryBroker) writeLoop() {
	defer close(b.toDeliver)
	var events []*Event
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closed {
			b.wake.Wait()
		}
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		batch := b.queue
		b.queue = nil
		b.mu.Unlock()

		events = events[:0]
		for _, p := range batch {
			if Sequenced(p.ev.Kind) {
				events = append(events, p.ev)
			}
		}
		if len(events) > 0 {
			if err := b.journal.Write(events); err != nil {
				b.refuse(batch, notSaved{err})
				continue
			}
			b.seqMu.Lock()
			for _, ev := range events {
				b.committed[ev.Room] = ev.Seq
			}
			b.seqMu.Unlock()
		}
		clear(events)
		b.toDeliver <- batch
	}
}

// refuse fails a batch whose write failed, and every sequenced event
// queued since (their seqs follow the lost ones), winding each room's
// counter back to what was written. Events outside any room's order in
// the batch are still delivered: they needed no writing.
func (b *MemoryBroker) refuse(batch []*pending, err error) {
	b.mu.Lock()
	later := b.queue
	b.queue = nil
	b.seqMu.Lock()
	for room, seq := range b.committed {
		b.seq[room] = seq
	}
	b.seqMu.Unlock()
	for _, p := range later {
		if Sequenced(p.ev.Kind) {
			p.done <- err
		} else {
			b.queue = append(b.queue, p) // nothing to rewind: deliver in turn
		}
	}
	b.mu.Unlock()
	for _, p := range batch {
		if Sequenced(p.ev.Kind) {
			p.err = err // refused by the deliverer, in turn
		}
	}
	b.toDeliver <- batch
}

func (b *MemoryBroker) deliverLoop() {
	for batch := range b.toDeliver {
		for _, p := range batch {
			if p.err == nil {
				p.err = b.deliverSafely(p.ev)
			}
			p.done <- p.err
		}
	}
}

// deliverSafely delivers ev; a panic (a bug in the fan-out) fails this
// event instead of stopping delivery for everyone.
func (b *MemoryBroker) deliverSafely(ev *Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("broker: delivering %s: panic: %v", ev.Kind, p)
		}
	}()
	b.deliver(ev)
	return nil
}

// Close implements io.Closer for a journaled broker: what was published is
// written and delivered, then its goroutines stop. Later publishes fail
// with ErrBrokerClosed. Without a journal it does nothing.
func (b *MemoryBroker) Close() error {
	if b.journal == nil {
		return nil
	}
	b.mu.Lock()
	b.closed = true
	b.wake.Broadcast()
	b.mu.Unlock()
	b.workers.Wait()
	return nil
}
