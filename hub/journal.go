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

// ErrNotSaved is the reason a message could not be written (the Journal's
// own error goes to its log, not to clients): it was not delivered, and
// its seq goes to the next one. Its sender is told with a KindRefused
// event.
var ErrNotSaved = errors.New("could not save the message: try again later")

// notSaved is ErrNotSaved with the journal's error behind it.
type notSaved struct{ cause error }

func (e notSaved) Error() string   { return ErrNotSaved.Error() }
func (e notSaved) Unwrap() []error { return []error{ErrNotSaved, e.cause} }

// maxQueued bounds the events a journaled broker holds between Publish and
// their write: past it, publishers wait (their connections' readers stop
// reading, which slows their clients down), so a flood costs no memory.
const maxQueued = 16384

// NewJournaledBroker returns a MemoryBroker that writes every sequenced
// event to j before delivering it. Publish returns once the event has its
// place in the order (and a seq); it is delivered after it is written. A
// message that cannot be written is not delivered: its sender gets a
// KindRefused event in its place, and its seq goes to the next one. Events
// flow through two goroutines, so that writing one batch overlaps
// delivering the last:
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
	b := &MemoryBroker{journal: j, committed: make(map[string]uint64), toDeliver: make(chan []*Event, 64)}
	b.wake = sync.NewCond(&b.mu)
	b.space = sync.NewCond(&b.mu)
	b.workers.Go(b.writeLoop)
	b.workers.Go(b.deliverLoop)
	return b
}

// publishJournaled sequences ev and queues it for the writer; b.mu is held
// and is released here.
func (b *MemoryBroker) publishJournaled(ev *Event) error {
	done, err := b.enqueueLocked(ev)
	b.mu.Unlock()
	if done != nil {
		<-done
	}
	return err
}

// enqueueLocked sequences ev and queues it for the writer, waiting (b.mu
// released meanwhile) while the queue is full. For a server-wide notice
// (the shutdown's), rare and due before what follows it (the members'
// disconnection), it returns a channel closed once the notice is delivered.
func (b *MemoryBroker) enqueueLocked(ev *Event) (delivered chan struct{}, err error) {
	for len(b.queue) >= maxQueued && !b.closed {
		b.space.Wait()
	}
	if b.closed {
		return nil, ErrBrokerClosed
	}
	if Sequenced(ev.Kind) {
		if err := b.sequenceJournaledLocked(ev); err != nil {
			return nil, err
		}
	}
	b.queue = append(b.queue, ev)
	b.wake.Signal()
	if ev.Kind != KindNotice {
		return nil, nil
	}
	delivered = make(chan struct{})
	if b.delivered == nil {
		b.delivered = make(map[*Event]chan struct{})
	}
	b.delivered[ev] = delivered
	return delivered, nil
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
		b.space.Broadcast()
		b.mu.Unlock()

		events = events[:0]
		for _, ev := range batch {
			if Sequenced(ev.Kind) {
				events = append(events, ev)
			}
		}
		if len(events) > 0 {
			if err := b.journal.Write(events); err != nil {
				b.toDeliver <- b.refuse(batch, notSaved{err})
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

// refuse handles a batch whose write failed, and every sequenced event
// queued since (their seqs follow the lost ones): each room's counter goes
// back to what was written, and each lost message becomes a KindRefused
// event for its sender (announcements, from System, are only lost). What
// needed no writing (private messages, typing) is delivered all the same.
// It returns what to deliver in the batch's place.
func (b *MemoryBroker) refuse(batch []*Event, err error) []*Event {
	b.mu.Lock()
	later := b.queue
	b.queue = nil
	b.space.Broadcast()
	b.seqMu.Lock()
	for room, seq := range b.committed {
		b.seq[room] = seq
	}
	b.seqMu.Unlock()
	b.mu.Unlock()
	out := make([]*Event, 0, len(batch)+len(later))
	for _, ev := range append(batch, later...) {
		switch {
		case !Sequenced(ev.Kind):
			out = append(out, ev)
		case ev.Kind == KindMessage:
			out = append(out, &Event{Kind: KindRefused, Room: ev.Room, Time: ev.Time, From: ev.From, Text: ev.Text, Reason: err.Error()})
		}
	}
	return out
}

func (b *MemoryBroker) deliverLoop() {
	for batch := range b.toDeliver {
		for _, ev := range batch {
			b.deliverSafely(ev)
			if ev.Kind == KindNotice {
				b.mu.Lock()
				if done := b.delivered[ev]; done != nil {
					delete(b.delivered, ev)
					close(done)
				}
				b.mu.Unlock()
			}
		}
	}
}

// deliverSafely delivers ev; a panic (a bug in the fan-out) loses this
// event instead of stopping delivery for everyone.
func (b *MemoryBroker) deliverSafely(ev *Event) {
	defer func() {
		if p := recover(); p != nil {
			b.panics.Add(1)
		}
	}()
	b.deliver(ev)
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
	b.space.Broadcast()
	b.mu.Unlock()
	b.workers.Wait()
	if n := b.panics.Load(); n > 0 {
		return fmt.Errorf("broker: %d deliveries panicked", n)
	}
	return nil
}
