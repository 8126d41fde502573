package nats

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"chatroom/hub"
)

// maxWrite bounds the events written to the Journal at once.
const maxWrite = 1024

// startConsumer reads the stream after cursor on one goroutine, for as
// long as the node runs: an ordered consumer, which NATS's client
// recreates after the last message it delivered whenever it loses it (a
// NATS restart, missed heartbeats), so nothing is read twice or skipped.
func (c *Cluster) startConsumer(cursor uint64) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{roomSubjects}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if cursor > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cursor+1
	}
	cons, err := c.js.OrderedConsumer(c.ctx, StreamName, cfg)
	if err != nil {
		return fmt.Errorf("nats: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("nats: consumer: %w", err)
	}
	c.consumerOK.Store(true)
	msgs := make(chan jetstream.Msg, maxWrite)
	c.workers.Go(func() {
		<-c.ctx.Done()
		it.Stop()
	})
	c.workers.Go(func() { c.read(it, msgs) })
	c.workers.Go(func() { c.consume(msgs) })
	return nil
}

// read hands the consumer's messages on, until it is stopped.
func (c *Cluster) read(it jetstream.MessagesContext, msgs chan<- jetstream.Msg) {
	defer close(msgs)
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || c.ctx.Err() != nil {
				return
			}
			c.log.Warn("stream consumer", "err", err)
			continue
		}
		msgs <- msg
	}
}

// consume is the delivering goroutine: it takes what has arrived (up to
// maxWrite events), writes it to the Journal in one transaction (group
// commit: the more arrives, the larger the batch), and delivers it, event
// by event, in the stream's order.
func (c *Cluster) consume(msgs <-chan jetstream.Msg) {
	last := make(map[string]uint64) // per room, the last seq delivered
	var events []*hub.Event
	var cursor uint64
	for msg := range msgs {
		for {
			if meta, err := msg.Metadata(); err != nil {
				c.log.Warn("stream message without metadata", "err", err)
			} else {
				cursor = meta.Sequence.Stream
				events = c.admit(msg, cursor, last, events)
			}
			if len(events) >= maxWrite {
				break
			}
			var more bool
			select {
			case msg, more = <-msgs:
			default:
			}
			if !more {
				break
			}
		}
		c.write(events, cursor)
		for _, ev := range events {
			c.deliverOne(ev)
		}
		c.consumed.Store(cursor)
		clear(events)
		events = events[:0]
	}
}

// admit decodes one stream message and appends the events in it that
// come next in their room: one seen already (a replay) is dropped. A hole
// (a seq skipped: the stream dropped events by its retention while this
// node was away) is logged; members resuming across it get a gap.
func (c *Cluster) admit(msg jetstream.Msg, stream uint64, last map[string]uint64, events []*hub.Event) []*hub.Event {
	batch, err := decodeEvents(msg.Data())
	if err != nil || len(batch) == 0 {
		c.log.Error("undecodable stream message skipped", "stream_seq", stream, "subject", msg.Subject(), "err", err)
		return events
	}
	room := batch[0].Room
	prev, ok := last[room]
	if !ok && c.opts.Journal != nil {
		if prev, err = c.opts.Journal.LastSeq(room); err != nil {
			c.log.Error("read journal", "room", room, "err", err)
		}
	}
	for _, ev := range batch {
		if ev.Room != room || !hub.Sequenced(ev.Kind) || ev.Seq <= prev {
			continue
		}
		if prev > 0 && ev.Seq != prev+1 {
			c.log.Warn("room history has a hole here", "room", room, "after", prev, "next", ev.Seq)
		}
		prev = ev.Seq
		events = append(events, ev)
	}
	last[room] = prev
	if seq, err := strconv.ParseUint(msg.Headers().Get(headerLastSeq), 10, 64); err == nil {
		c.observed(room, stream, seq)
	}
	return events
}

// write writes events to the Journal, if any, with the stream position
// they end at. A Journal that fails is retried a few times; then the
// events are delivered anyway (the live chat goes on) and the node's copy
// of the history has a hole, logged at Error, and /readyz says so
// through the journal's own health.
func (c *Cluster) write(events []*hub.Event, cursor uint64) {
	j := c.opts.Journal
	if j == nil {
		return
	}
	var err error
	for attempt := range 5 {
		if err = j.WriteThrough(events, cursor); err == nil {
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	c.log.Error("cannot save the cluster's history on this node; delivering anyway", "events", len(events), "stream_seq", cursor, "err", err)
}

// startDirect subscribes to what is not stored: private messages, typing
// and notices, from every node.
func (c *Cluster) startDirect() error {
	sub, err := c.nc.Subscribe(directSubject, func(msg *natsio.Msg) {
		evs, err := decodeEvents(msg.Data)
		if err != nil || len(evs) != 1 || hub.Sequenced(evs[0].Kind) {
			c.log.Warn("undecodable direct message skipped", "err", err)
			return
		}
		if evs[0].Kind == hub.KindNotice && msg.Header.Get(headerOrigin) == c.name {
			return // delivered here when it was published
		}
		c.deliverOne(evs[0])
	})
	if err != nil {
		return fmt.Errorf("nats: subscribe %s: %w", directSubject, err)
	}
	// A node that falls behind on direct messages loses some (NATS cuts a
	// slow subscriber's backlog) rather than holding NATS up.
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	c.workers.Go(func() {
		<-c.ctx.Done()
		_ = sub.Unsubscribe()
	})
	return nil
}
