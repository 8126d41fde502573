package hub

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Broker carries the room's events and gives them their one order. The hub
// publishes every event to it and receives them back, sequenced, through the
// function passed to Subscribe. A broker that spans several chatd nodes (NATS)
// satisfies the same contract, so the fronts never notice which one is used.
type Broker interface {
	// Subscribe registers the function that receives every event, one at a
	// time, in the broker's order. It is called once, before any Publish.
	Subscribe(deliver func(*Event)) error
	// Publish stamps the event's Seq and Time and has it delivered: before
	// it returns (MemoryBroker), or after (once written, for a journaled
	// one, or once back from the network).
	Publish(ctx context.Context, ev *Event) error
}

// ErrNotSubscribed is returned by MemoryBroker.Publish before Subscribe.
var ErrNotSubscribed = errors.New("broker: no subscriber")

// MemoryBroker is the single-process Broker: it sequences events under a mutex
// and delivers each synchronously on the publisher's goroutine. Its zero value
// is ready to use. NewJournaledBroker makes one that writes events to a
// Journal before delivering them.
type MemoryBroker struct {
	mu      sync.Mutex // serialises sequencing and delivery: the rooms' order
	deliver func(*Event)

	// seqMu guards seq and committed. It is a leaf lock apart from mu,
	// because the hub forgets a removed room's counter under its own lock,
	// which publishing takes under mu.
	seqMu     sync.Mutex
	seq       map[string]uint64
	committed map[string]uint64 // journaled: the last seq written per room

	// With a journal (NewJournaledBroker), events go through a writer and
	// a deliverer goroutine; these are theirs, guarded by mu.
	journal   Journal
	queue     []*Event
	wake      *sync.Cond // signals the writer: queue is not empty, or closed
	space     *sync.Cond // signals publishers: the queue has room, or closed
	closed    bool
	toDeliver chan []*Event
	delivered map[*Event]chan struct{} // notices whose publishers wait for their delivery
	workers   sync.WaitGroup
	panics    atomic.Int64 // deliveries that panicked (a bug in the fan-out)
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(deliver func(*Event)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deliver != nil {
		return errors.New("broker: already subscribed")
	}
	b.deliver = deliver
	return nil
}

// Publish implements Broker. It returns once every local member has the event
// queued.
func (b *MemoryBroker) Publish(_ context.Context, ev *Event) error {
	b.mu.Lock()
	if b.deliver == nil {
		b.mu.Unlock()
		return ErrNotSubscribed
	}
	ev.Time = time.Now()
	if b.journal != nil {
		return b.publishJournaled(ev)
	}
	defer b.mu.Unlock()
	if Sequenced(ev.Kind) {
		b.seqMu.Lock()
		if b.seq == nil {
			b.seq = make(map[string]uint64)
		}
		b.seq[ev.Room]++
		ev.Seq = b.seq[ev.Room]
		b.seqMu.Unlock()
	}
	b.deliver(ev)
	return nil
}

// ForgetRoom implements RoomForgetter: the room was removed, and if it is
// created again it starts from seq 1. The hub calls it holding its own
// lock, with nothing on its way to the room.
func (b *MemoryBroker) ForgetRoom(room string) {
	b.seqMu.Lock()
	defer b.seqMu.Unlock()
	if b.journal != nil && b.seq[room] != b.committed[room] {
		return // something is still being written: keep counting
	}
	delete(b.seq, room)
	delete(b.committed, room)
}

// Sequenced reports whether events of kind k take a place in their room's
// order (and so a Seq).
func Sequenced(k Kind) bool {
	switch k {
	case KindMessage, KindJoin, KindLeave, KindRename:
		return true
	}
	return false
}
