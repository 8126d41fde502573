package nats

import (
	"context"
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

// stallAfter is how long the consumer may deliver nothing while the
// stream has more before it is recreated (see watchConsumer).
const stallAfter = 3 * time.Second

// startConsumer reads the stream after cursor, for as long as the node
// runs, delivering on one goroutine (consume). It reads with an ordered
// consumer, which NATS's client recreates after the last message it
// delivered whenever it loses it (a NATS restart, missed heartbeats); and
// since a consumer has been seen to stop delivering without any of that
// under heavy load, a watchdog compares where it is with where the stream
// is and recreates it after the last event delivered if it is stuck. The
// per-room seq check in admit drops anything read twice.
func (c *Cluster) startConsumer(cursor uint64) error {
	it, err := c.openConsumer(cursor)
	if err != nil {
		return err
	}
	c.consumerOK.Store(true)
	msgs := make(chan jetstream.Msg, maxWrite)
	c.workers.Go(func() { c.read(it, msgs, c.reopen) })
	c.workers.Go(func() { c.consume(msgs) })
	c.workers.Go(func() { c.watchConsumer(c.reopen) })
	return nil
}

// openConsumer opens an ordered consumer on every room after stream
// position cursor.
func (c *Cluster) openConsumer(cursor uint64) (jetstream.MessagesContext, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{roomSubjects}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if cursor > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cursor+1
	}
	cons, err := c.js.OrderedConsumer(c.ctx, StreamName, cfg)
	if err != nil {
		return nil, fmt.Errorf("nats: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return nil, fmt.Errorf("nats: consumer: %w", err)
	}
	return it, nil
}

// read hands the consumer's messages on until the node closes, opening a
// new consumer after the last delivered position when told to (restart).
func (c *Cluster) read(it jetstream.MessagesContext, msgs chan<- jetstream.Msg, restart <-chan struct{}) {
	defer close(msgs)
	for {
		c.readAll(it, msgs, restart)
		it.Stop()
		for c.ctx.Err() == nil {
			next, err := c.openConsumer(c.consumed.Load())
			if err == nil {
				it = next
				break
			}
			c.consumerOK.Store(false)
			c.log.Warn("reopen the stream's consumer", "err", err)
			select {
			case <-c.ctx.Done():
			case <-time.After(time.Second):
			}
		}
		if c.ctx.Err() != nil {
			return
		}
		c.consumerOK.Store(true)
	}
}

// nextWait bounds each wait for the consumer's next message, so that
// readAll notices a restart or the node closing: stopping an ordered
// consumer's iterator does not always end a Next already waiting (not
// while the client is recreating the consumer after a NATS restart).
const nextWait = 250 * time.Millisecond

// readAll hands on what it reads until the iterator ends, the node closes
// or restart says so.
func (c *Cluster) readAll(it jetstream.MessagesContext, msgs chan<- jetstream.Msg, restart <-chan struct{}) {
	for {
		msg, err := it.Next(jetstream.NextMaxWait(nextWait))
		if err != nil {
			switch {
			case errors.Is(err, jetstream.ErrMsgIteratorClosed) || c.ctx.Err() != nil:
				return
			case errors.Is(err, natsio.ErrTimeout):
			default:
				c.log.Warn("stream consumer", "err", err)
			}
			select {
			case <-restart:
				return
			case <-c.ctx.Done():
				return
			default:
				continue
			}
		}
		if c.loseReads.Load() > 0 && c.loseReads.Add(-1) >= 0 {
			continue // tests: a consumer that silently stops delivering
		}
		select {
		case msgs <- msg:
		case <-c.ctx.Done():
			return
		}
	}
}

// watchConsumer restarts the consumer when the stream has events past
// what was delivered and nothing was delivered for stallAfter.
func (c *Cluster) watchConsumer(restart chan<- struct{}) {
	t := time.NewTicker(stallAfter / 3)
	defer t.Stop()
	last, since := c.consumed.Load(), time.Now()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if now := c.consumed.Load(); now != last || c.nc.Status() != natsio.CONNECTED {
			last, since = now, time.Now()
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, stallAfter)
		info, err := c.str.Info(ctx)
		cancel()
		if err != nil || info.State.LastSeq <= last {
			since = time.Now() // nothing to read: not stuck
			continue
		}
		if time.Since(since) >= stallAfter {
			c.log.Warn("the stream's consumer is stuck; reopening it", "at", last, "stream_at", info.State.LastSeq)
			select {
			case restart <- struct{}{}:
			default:
			}
			since = time.Now()
		}
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
