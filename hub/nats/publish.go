package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"chatroom/hub"
)

// Headers on a room's stream messages.
const (
	headerLastSeq = "Chatd-Last-Seq" // the room seq of the batch's last event
	headerBatch   = "Chatd-Batch"    // node name and batch number: finds a publish whose outcome was lost
	headerOrigin  = "Chatd-Node"     // on direct messages: the node that sent it
)

// errAnswerLost stands for a publish whose acknowledgement never came
// (tests: Cluster.loseAnswer).
var errAnswerLost = errors.New("nats: the answer was lost")

// maxBatch bounds the events in one stream message: 128 of the longest
// messages (4 KiB, escaped at most twice) stay under NATS's 1 MB payload.
const maxBatch = 128

// Publish implements hub.Broker. A room event is queued for its room's
// publisher and Publish returns: it is delivered, here and on every node,
// by the consumer once it is stored in JetStream with its seq, and a
// message that cannot be stored comes back to its sender as a KindRefused
// event instead (as with a journaled MemoryBroker), so that a member's
// messages are sent in batches rather than one round trip at a time.
// Anything else returns once it is sent. While NATS is unreachable
// Publish fails at once with ErrUnavailable, except a server-wide notice,
// which this node's own members get regardless. Publish waits only while
// its room has maxQueued events waiting (backpressure).
func (c *Cluster) Publish(ctx context.Context, ev *hub.Event) error {
	ev.Time = time.Now()
	switch {
	case hub.Sequenced(ev.Kind):
		if c.nc.Status() != natsio.CONNECTED {
			return ErrUnavailable
		}
		_, err := c.enqueue(ctx, []*hub.Event{ev}, false)
		return err
	case ev.Kind == hub.KindNotice && ev.Room == "":
		c.deliverOne(ev) // this node's members first: it may be shutting down
		_ = c.publishDirect(ev)
		return nil
	default:
		return c.publishDirect(ev)
	}
}

// publishDirect sends an unsequenced event to every node over core NATS.
func (c *Cluster) publishDirect(ev *hub.Event) error {
	if c.nc.Status() != natsio.CONNECTED {
		return ErrUnavailable
	}
	data, err := encodeEvents([]*hub.Event{ev})
	if err != nil {
		return fmt.Errorf("nats: encode: %w", err)
	}
	msg := natsio.NewMsg(directSubject)
	msg.Header.Set(headerOrigin, c.name)
	msg.Data = data
	if err := c.nc.PublishMsg(msg); err != nil {
		c.log.Warn("direct publish", "err", err)
		return ErrUnavailable
	}
	return nil
}

// roomPublisher publishes one room's events in batches, from one goroutine
// that runs while it has something to send.
type roomPublisher struct {
	room    string
	subject string

	mu      sync.Mutex
	queue   []*pending
	running bool
	// base is the room's last stored message as this node knows it: its
	// stream sequence and the room seq of its last event. known is false
	// when it must be read again (first use, lost race, unknown outcome).
	baseStream, baseSeq uint64
	known               bool
	// unsure is a batch whose outcome was lost, and unsureBase the base it
	// was sent on: it must be looked for before anything else is
	// published in the room.
	unsure     string
	unsureBase uint64
}

type pending struct {
	ev   *hub.Event
	done chan error
}

// subjectOf is a room's subject: its name in base64url, since a room name
// may hold any letter, and '.', '*' and '>' mean something to NATS.
func subjectOf(room string) string {
	return roomPrefix + base64.RawURLEncoding.EncodeToString([]byte(room))
}

// publishRoom stores events, all of one room, and waits until they are
// stored (or refused).
func (c *Cluster) publishRoom(ctx context.Context, events []*hub.Event) error {
	ps, err := c.enqueue(ctx, events, true)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		select {
		case err := <-p.done:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// maxQueued bounds the events waiting for one room's publisher: past it,
// publishers wait (their connections' readers stop reading, which slows
// their clients down), so a flood costs no memory.
const maxQueued = 16384

// enqueue queues events, all of one room, for the room's publisher,
// starting it if it is not running. With wait, each pending event gets a
// channel its outcome is sent on; without, a message that cannot be
// stored is refused to its sender with a KindRefused event.
func (c *Cluster) enqueue(ctx context.Context, events []*hub.Event, wait bool) ([]*pending, error) {
	room := events[0].Room
	c.pubMu.Lock()
	rp := c.pubs[room]
	if rp == nil {
		rp = &roomPublisher{room: room, subject: subjectOf(room)}
		c.pubs[room] = rp
	}
	c.pubMu.Unlock()

	ps := make([]*pending, len(events))
	for i, ev := range events {
		ps[i] = &pending{ev: ev}
		if wait {
			ps[i].done = make(chan error, 1)
		}
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for len(rp.queue) >= maxQueued {
		rp.mu.Unlock()
		select { // rare: a room flooded past what NATS takes
		case <-ctx.Done():
			rp.mu.Lock()
			return nil, ctx.Err()
		case <-c.ctx.Done():
			rp.mu.Lock()
			return nil, ErrUnavailable
		case <-time.After(time.Millisecond):
		}
		rp.mu.Lock()
	}
	rp.queue = append(rp.queue, ps...)
	if !rp.running {
		rp.running = true
		c.workers.Go(func() { c.runPublisher(rp) })
	}
	return ps, nil
}

// runPublisher publishes rp's queue, a batch at a time, until it is empty.
func (c *Cluster) runPublisher(rp *roomPublisher) {
	for {
		rp.mu.Lock()
		n := min(len(rp.queue), maxBatch)
		if n == 0 {
			rp.running = false
			rp.mu.Unlock()
			return
		}
		batch := rp.queue[:n:n]
		rp.queue = rp.queue[n:]
		rp.mu.Unlock()

		err := c.publishBatch(rp, batch)
		for _, p := range batch {
			switch {
			case p.done != nil:
				p.done <- err
			case err != nil && p.ev.Kind == hub.KindMessage:
				c.deliverOne(&hub.Event{Kind: hub.KindRefused, Room: p.ev.Room, Time: p.ev.Time,
					From: p.ev.From, Text: p.ev.Text, Reason: err.Error()})
			case err != nil:
				c.log.Warn("announcement lost", "kind", p.ev.Kind.String(), "room", p.ev.Room, "err", err)
			}
		}
	}
}

// publishBatch stores one batch as the room's next stream message, trying
// again on a lost race until PublishTimeout.
func (c *Cluster) publishBatch(rp *roomPublisher, batch []*pending) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.PublishTimeout)
	defer cancel()
	var batchID string // the last attempt's
	for attempt := 0; ; attempt++ {
		if attempt > 1 {
			// Lost the race for the room's next place more than once:
			// back off a little (up to 20 ms, jittered), so that the
			// nodes sending to one room take turns.
			select {
			case <-ctx.Done():
				return ErrUnavailable
			case <-time.After(time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))):
			}
		}
		if c.nc.Status() != natsio.CONNECTED {
			return ErrUnavailable // refused, not queued: the sender knows at once
		}
		landed, err := c.settle(ctx, rp)
		if err != nil {
			c.log.Debug("read room's last message", "room", rp.room, "err", err)
			continue
		}
		if landed != "" && landed == batchID {
			return nil // the attempt whose answer was lost was stored
		}
		rp.mu.Lock()
		baseStream, baseSeq := rp.baseStream, rp.baseSeq
		rp.mu.Unlock()
		events := make([]*hub.Event, len(batch))
		for i, p := range batch {
			p.ev.Seq = baseSeq + uint64(i) + 1
			events[i] = p.ev
		}
		data, err := encodeEvents(events)
		if err != nil {
			return fmt.Errorf("nats: encode: %w", err)
		}
		// Unique across the node's runs (the ordinal is new each start):
		// JetStream drops a message whose id it saw in the last two
		// minutes as a duplicate.
		id := c.name + "-" + strconv.FormatInt(c.ordinal, 10) + "-" + strconv.FormatUint(c.batch.Add(1), 10)
		batchID = id
		msg := natsio.NewMsg(rp.subject)
		msg.Header.Set(headerLastSeq, strconv.FormatUint(baseSeq+uint64(len(batch)), 10))
		msg.Header.Set(headerBatch, id)
		msg.Data = data
		ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(baseStream), jetstream.WithMsgID(id))
		if err == nil && c.loseAnswer != nil && c.loseAnswer() {
			err = errAnswerLost
		}
		switch {
		case err == nil:
			rp.mu.Lock()
			rp.observe(ack.Sequence, baseSeq+uint64(len(batch)))
			rp.mu.Unlock()
			return nil
		case isWrongLastSequence(err):
			rp.mu.Lock()
			rp.known = false // someone else published: read the room again
			rp.mu.Unlock()
		default:
			// Lost on the way (NATS went away, or timed out): it may be
			// stored. Look for it before anything else goes out.
			c.log.Debug("room publish outcome unknown", "room", rp.room, "batch", id, "err", err)
			rp.mu.Lock()
			rp.known, rp.unsure, rp.unsureBase = false, id, baseStream
			rp.mu.Unlock()
			if ctx.Err() == nil {
				continue
			}
			return ErrUnavailable
		}
	}
}

// settle makes rp's base known: the room's last stored message. If an
// attempt's outcome was lost, it looks for it (stored, it is the room's
// first message after the base it was sent on) and returns its batch id if
// it was stored: then it must not be sent again. (If the retry loop that
// sent it has given up, its senders were told it failed though it was
// stored; they see it arrive. A lost answer cannot be told apart from a
// lost message any sooner.)
func (c *Cluster) settle(ctx context.Context, rp *roomPublisher) (landed string, err error) {
	rp.mu.Lock()
	known, unsure, unsureBase := rp.known, rp.unsure, rp.unsureBase
	rp.mu.Unlock()
	if known {
		return "", nil
	}
	stream, seq, _, err := c.roomMessage(ctx, rp, 0)
	if err != nil {
		return "", err
	}
	if unsure != "" && stream > unsureBase {
		_, _, batch, err := c.roomMessage(ctx, rp, unsureBase+1)
		if err != nil {
			return "", err
		}
		if batch == unsure {
			landed = unsure
		}
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.baseStream, rp.baseSeq, rp.known, rp.unsure = stream, seq, true, ""
	return landed, nil
}

// roomMessage reads the room's last stored message (from 0) or its first
// at or after stream position from: its stream position, the room seq it
// ends at and its batch id. A room with none is (0, 0, "").
func (c *Cluster) roomMessage(ctx context.Context, rp *roomPublisher, from uint64) (stream, seq uint64, batch string, err error) {
	var m *jetstream.RawStreamMsg
	if from == 0 {
		m, err = c.str.GetLastMsgForSubject(ctx, rp.subject)
	} else {
		m, err = c.str.GetMsg(ctx, from, jetstream.WithGetMsgSubject(rp.subject))
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, 0, "", nil
	case err != nil:
		return 0, 0, "", err
	}
	if seq, err = strconv.ParseUint(m.Header.Get(headerLastSeq), 10, 64); err != nil {
		return 0, 0, "", fmt.Errorf("room %q: stream message %d has no seq: %w", rp.room, m.Sequence, err)
	}
	return m.Sequence, seq, m.Header.Get(headerBatch), nil
}

// observe moves rp's base forward to a stored message (this node's, or
// one the consumer read). rp.mu is held.
func (rp *roomPublisher) observe(stream, seq uint64) {
	if stream > rp.baseStream {
		rp.baseStream, rp.baseSeq = stream, seq
	}
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}

// observed is the consumer telling publishers about a stored room message,
// so that the next batch is sent on the right base without a lost race.
func (c *Cluster) observed(room string, stream, seq uint64) {
	c.pubMu.Lock()
	rp := c.pubs[room]
	c.pubMu.Unlock()
	if rp != nil {
		rp.mu.Lock()
		if rp.known {
			rp.observe(stream, seq)
		}
		rp.mu.Unlock()
	}
}
