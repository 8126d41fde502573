// Package nats makes several chatd nodes one chat, through a NATS server
// with JetStream. A Cluster is the hub's Broker (the one order of every
// room, cluster-wide) and its Directory (nicknames and presence across
// nodes). Only cmd/chatd imports it.
//
// # How it works
//
//   - Rooms. Every room event (message, join, leave, rename) is stored in
//     the JetStream stream CHATD, on the subject chatd.room.<room>. A node
//     publishes a room's events in batches (one stream message each, group
//     commit) from one goroutine per room that has something to send, with
//     the header Nats-Expected-Last-Subject-Sequence set to the room's last
//     stream message as this node knows it: a batch is stored only if
//     nothing else was stored in the room since, so the seqs it carries
//     (the last one +1, +2, ...) are the room's next. A node that loses the
//     race reads the room's last message and tries again. So a room's seq
//     is contiguous (1, 2, 3, ... with no hole) and every node agrees on
//     it. A publish whose outcome is unknown (NATS went away before its
//     acknowledgement) is looked for before it is tried again, so it is
//     never stored twice.
//   - Delivery. Each node reads the whole stream with one ordered consumer
//     on one goroutine, writes what it reads to its Journal (its own
//     SQLite copy of the history, if any, with the stream position in the
//     same transaction) and hands each event to the hub, which delivers it
//     to this node's members only. A member's own message comes back this
//     way too: its echo is its acknowledgement, and it means the message is
//     in JetStream (Publish itself only queues: a message that cannot be
//     stored comes back to its sender as hub.KindRefused). On start a node
//     catches up from where its Journal ends (or, without one, replays
//     what the stream retains) before it serves. The consumer is reopened
//     after the last event delivered when NATS comes back, and by a
//     watchdog if it stops delivering while the stream moves on.
//   - Everything else (private messages, typing, notices) is not stored:
//     it goes over core NATS on chatd.direct to every node, which delivers
//     it to whichever of its members it is for.
//   - Nicknames are claimed in the KV bucket chatd-nicks with Create (one
//     winner, cluster-wide); presence (which member of which node is in
//     which rooms) is the bucket chatd-presence, which every node watches.
//   - Nodes heartbeat in chatd-nodes every DeadAfter/5. A node not heard
//     from for DeadAfter is dead: its members disappear from every list,
//     and the live node with the lowest name announces their leaves and
//     frees their nicknames. A node that was declared dead while cut off
//     learns it when it comes back, and stops (Err): its members were
//     announced gone.
//   - Outage. While NATS is unreachable a node keeps its connections,
//     refuses what would need NATS (sends, logins) with ErrUnavailable,
//     reports not ready, and reconnects with backoff; its consumer resumes
//     after the last event it delivered, so nothing is missed or repeated.
package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"chatroom/hub"
)

// LeakedByTheClient lists goroutines of NATS's client that may outlive a
// Cluster, for leak checks to ignore: when the server restarts, an
// ordered consumer recreates its pull subscription, and stopping the
// consumer during that leaves the new one's two goroutines behind (a
// handful per NATS restart, never per message).
var LeakedByTheClient = []string{
	"github.com/nats-io/nats.go/jetstream.(*pullSubscription).pullMessages",
	"github.com/nats-io/nats.go/jetstream.(*pullConsumer).Messages.func2",
}

// Names in NATS.
const (
	StreamName     = "CHATD"
	roomSubjects   = "chatd.room.>"
	roomPrefix     = "chatd.room."
	directSubject  = "chatd.direct"
	nicksBucket    = "chatd-nicks"
	presenceBucket = "chatd-presence"
	nodesBucket    = "chatd-nodes"
)

// Defaults for Options.
const (
	DefaultDeadAfter      = 15 * time.Second
	DefaultRetain         = 10000
	DefaultPublishTimeout = 5 * time.Second
	DefaultCatchUpTimeout = 2 * time.Minute
)

// ErrUnavailable is what a member is told when its node cannot reach NATS:
// nothing was sent, and the order of the rooms is not split.
var ErrUnavailable = errors.New("the chat cluster is unreachable right now: try again later")

// Journal is a node's own copy of the cluster's history (hub/sqlite): the
// events it has read from the stream, and where in the stream it stopped.
type Journal interface {
	// Resume returns the stream position the copy ends at (0: empty), after
	// checking that it is a copy of the history named epoch: a database
	// of another history (another cluster, or a node alone) is refused.
	Resume(epoch string) (uint64, error)
	// WriteThrough writes events (skipping any it already has) and records
	// that the copy now ends at stream position cursor, atomically.
	WriteThrough(events []*hub.Event, cursor uint64) error
	// LastSeq returns the last seq the copy has of room (0: none).
	LastSeq(room string) (uint64, error)
}

// Options configure a Cluster. The zero value of every field but URL is a
// documented default.
type Options struct {
	// URL is the NATS server (or servers, comma-separated).
	URL string
	// Name is this node's name in the cluster. Default: random. Names must
	// be unique among live nodes.
	Name string
	// Journal is this node's copy of the history. Default: none (history
	// in memory, replayed from the stream on start).
	Journal Journal
	// DeadAfter is how long a node may go unheard before it is dead: its
	// members announced gone and their nicknames freed. Default
	// DefaultDeadAfter.
	DeadAfter time.Duration
	// Retain is how many events the stream keeps per room (the last one
	// always stays, so a room's seq never goes back). Default DefaultRetain.
	Retain int
	// AnnounceLimit: a dead node's members are announced leaving only in
	// rooms of at most this many members (hub.Options.AnnounceLimit).
	// Default hub.DefaultAnnounceLimit; negative: always.
	AnnounceLimit int
	// PublishTimeout bounds how long a send waits for NATS. Default
	// DefaultPublishTimeout.
	PublishTimeout time.Duration
	// CatchUpTimeout bounds how long Start waits to read the stream up to
	// where it was when Start began. Default DefaultCatchUpTimeout.
	CatchUpTimeout time.Duration
	// Logger receives the cluster's logs. Default: discard.
	Logger *slog.Logger
}

// Cluster is this node's part in a cluster: a hub.Broker and a
// hub.Directory. Open it, give it to hub.New as both, then Start it.
type Cluster struct {
	opts  Options
	log   *slog.Logger
	name  string
	nc    *natsio.Conn
	js    jetstream.JetStream
	str   jetstream.Stream
	nicks jetstream.KeyValue
	pres  jetstream.KeyValue
	nodes jetstream.KeyValue

	epoch   string
	ordinal int64

	deliverMu sync.Mutex // one delivery at a time: the hub's fan-out
	deliver   func(*hub.Event)

	pubMu sync.Mutex
	pubs  map[string]*roomPublisher // rooms with a publisher (see publish.go)
	batch atomic.Uint64             // batch ids, unique to this node

	dir directory // nicknames, presence, nodes (see directory.go)

	// loseAnswer, in tests, makes a stored batch look unacknowledged
	// (NATS went away before the answer came) when it returns true.
	loseAnswer func() bool
	// loseReads, in tests, makes the consumer drop that many messages, as
	// a consumer that stops delivering would.
	loseReads atomic.Int32

	consumed   atomic.Uint64 // the stream position delivered up to
	reopen     chan struct{} // tells the consumer to start again after consumed
	consumerOK atomic.Bool   // the consumer is reading

	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	workers sync.WaitGroup
	errMu   sync.Mutex // guards errc's closing
	errc    chan error // closed by Close
	closed  bool       // guarded by errMu
}

var (
	_ hub.Broker    = (*Cluster)(nil)
	_ hub.Directory = (*Cluster)(nil)
)

// Open connects to NATS, creates what the cluster needs there if this is
// its first node (the stream, the KV buckets, the history's epoch) and
// takes this node's place (its member-id range). It does not read or
// publish anything yet: Start does.
func Open(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.URL == "" {
		return nil, errors.New("nats: no URL")
	}
	if opts.Name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.Name = hex.EncodeToString(b[:])
	}
	if !validName(opts.Name) {
		return nil, fmt.Errorf("nats: node name %q: use letters, digits, '-' and '_'", opts.Name)
	}
	if opts.DeadAfter <= 0 {
		opts.DeadAfter = DefaultDeadAfter
	}
	if opts.Retain <= 0 {
		opts.Retain = DefaultRetain
	}
	if opts.AnnounceLimit == 0 {
		opts.AnnounceLimit = hub.DefaultAnnounceLimit
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.CatchUpTimeout <= 0 {
		opts.CatchUpTimeout = DefaultCatchUpTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{opts: opts, log: opts.Logger.With("node", opts.Name), name: opts.Name,
		pubs: make(map[string]*roomPublisher), errc: make(chan error, 1), reopen: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.dir.init(c)

	nc, err := natsio.Connect(opts.URL,
		natsio.Name("chatd "+opts.Name),
		natsio.MaxReconnects(-1), // forever, with backoff and jitter
		natsio.ReconnectWait(250*time.Millisecond),
		natsio.ReconnectJitter(250*time.Millisecond, time.Second),
		// Nothing is buffered while disconnected: a send then fails at
		// once (ErrUnavailable) rather than going out late.
		natsio.ReconnectBufSize(-1),
		natsio.DisconnectErrHandler(func(nc *natsio.Conn, err error) {
			if nc.IsClosed() {
				return // Close
			}
			c.log.Warn("lost NATS; reconnecting", "err", err)
			c.dir.disconnected()
		}),
		natsio.ReconnectHandler(func(nc *natsio.Conn) {
			c.log.Info("NATS is back", "url", nc.ConnectedUrlRedacted())
			c.dir.reconnected()
			// A restarted NATS server has forgotten the consumer: start
			// again after the last event delivered, at once.
			select {
			case c.reopen <- struct{}{}:
			default:
			}
		}),
	)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("nats: connect %s: %w", opts.URL, err)
	}
	c.nc = nc
	if err := c.setUp(ctx); err != nil {
		nc.Close()
		c.cancel()
		return nil, err
	}
	return c, nil
}

// setUp creates (or finds) the stream and the buckets and takes this
// node's epoch and ordinal.
func (c *Cluster) setUp(ctx context.Context) error {
	var err error
	if c.js, err = jetstream.New(c.nc); err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	c.str, err = c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "chatd: every room's events",
		Subjects:    []string{roomSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// Count per room, never age: a room's last event must stay, or
		// its seq would start again at 1.
		MaxMsgsPerSubject: int64(c.opts.Retain),
		Discard:           jetstream.DiscardOld,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
	})
	if err != nil {
		return fmt.Errorf("nats: stream %s: %w", StreamName, err)
	}
	bucket := func(name, what string) (jetstream.KeyValue, error) {
		kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, Description: what,
			History: 1, Storage: jetstream.FileStorage})
		if err != nil {
			return nil, fmt.Errorf("nats: bucket %s: %w", name, err)
		}
		return kv, nil
	}
	if c.nicks, err = bucket(nicksBucket, "chatd: nicknames taken (key: the nickname's folded form)"); err != nil {
		return err
	}
	if c.pres, err = bucket(presenceBucket, "chatd: members by node, and their rooms"); err != nil {
		return err
	}
	if c.nodes, err = bucket(nodesBucket, "chatd: live nodes, the epoch, node ordinals"); err != nil {
		return err
	}
	if c.epoch, err = c.takeEpoch(ctx); err != nil {
		return err
	}
	if c.ordinal, err = c.takeOrdinal(ctx); err != nil {
		return err
	}
	return nil
}

// takeEpoch reads the cluster's epoch, creating it with the first node.
func (c *Cluster) takeEpoch(ctx context.Context) (string, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	if _, err := c.nodes.Create(ctx, "epoch", []byte(hex.EncodeToString(b[:]))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return "", fmt.Errorf("nats: epoch: %w", err)
	}
	e, err := c.nodes.Get(ctx, "epoch")
	if err != nil {
		return "", fmt.Errorf("nats: epoch: %w", err)
	}
	return string(e.Value()), nil
}

// maxOrdinal keeps member ids (ordinal<<32 + n) below 2^53, exact in a
// JavaScript number.
const maxOrdinal = 1<<21 - 1

// takeOrdinal takes the next node ordinal (a compare-and-set loop): each
// node start gets its own, so member ids are never reused cluster-wide.
func (c *Cluster) takeOrdinal(ctx context.Context) (int64, error) {
	for {
		e, err := c.nodes.Get(ctx, "ordinal")
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := c.nodes.Create(ctx, "ordinal", []byte("1")); err == nil {
				return 1, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("nats: node ordinal: %w", err)
			}
		case err != nil:
			return 0, fmt.Errorf("nats: node ordinal: %w", err)
		default:
			n, _ := strconv.ParseInt(string(e.Value()), 10, 64)
			next := n%maxOrdinal + 1
			if _, err := c.nodes.Update(ctx, "ordinal", []byte(strconv.FormatInt(next, 10)), e.Revision()); err == nil {
				return next, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return 0, fmt.Errorf("nats: node ordinal: %w", err)
			}
		}
	}
}

// Name is this node's name.
func (c *Cluster) Name() string { return c.name }

// Epoch is the cluster's history's epoch (hub.Options.Epoch).
func (c *Cluster) Epoch() string { return c.epoch }

// FirstID is where this node's member ids start (hub.Options.FirstID).
func (c *Cluster) FirstID() int64 { return c.ordinal << 32 }

// Subscribe implements hub.Broker.
func (c *Cluster) Subscribe(deliver func(*hub.Event)) error {
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	if c.deliver != nil {
		return errors.New("nats: already subscribed")
	}
	c.deliver = deliver
	return nil
}

// Start begins this node's part: it reads the stream up to where it was
// (so a member joining here gets the whole history), then serves: it
// delivers the cluster's events, watches presence and nodes, and
// heartbeats. Call it after hub.New has subscribed.
func (c *Cluster) Start(ctx context.Context) error {
	if c.deliver == nil {
		return errors.New("nats: Start before Subscribe")
	}
	var cursor uint64
	if j := c.opts.Journal; j != nil {
		var err error
		if cursor, err = j.Resume(c.epoch); err != nil {
			return fmt.Errorf("nats: %w", err)
		}
	}
	info, err := c.str.Info(ctx)
	if err != nil {
		return fmt.Errorf("nats: stream %s: %w", StreamName, err)
	}
	target := info.State.LastSeq
	c.consumed.Store(cursor)
	if err := c.startConsumer(cursor); err != nil {
		return err
	}
	if err := c.dir.start(ctx); err != nil {
		return err
	}
	if err := c.startDirect(); err != nil {
		return err
	}
	// Catch up before serving.
	deadline := time.Now().Add(c.opts.CatchUpTimeout)
	for c.consumed.Load() < target {
		if time.Now().After(deadline) {
			return fmt.Errorf("nats: catching up: at %d of %d after %s", c.consumed.Load(), target, c.opts.CatchUpTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.log.Info("in the cluster", "epoch", c.epoch, "ordinal", c.ordinal, "caught_up_to", target)
	return nil
}

// Err reports a failure that ends this node's part in the cluster: it was
// declared dead while cut off (its members were announced gone). It is
// closed by Close.
func (c *Cluster) Err() <-chan error { return c.errc }

// Ready reports whether this node can serve: connected to NATS, its
// consumer reading.
func (c *Cluster) Ready() error {
	if c.nc.Status() != natsio.CONNECTED {
		return fmt.Errorf("nats: %s", c.nc.Status())
	}
	if !c.consumerOK.Load() {
		return errors.New("nats: the stream's consumer is not reading")
	}
	return nil
}

// Close leaves the cluster: what this node's members did is flushed to
// NATS (their presence and nicknames, within ctx), its node entry is
// removed, and its goroutines stop. Call it after the hub's members have
// logged out.
func (c *Cluster) Close(ctx context.Context) error {
	c.errMu.Lock()
	already := c.closed
	c.closed = true
	c.errMu.Unlock()
	if already {
		return nil
	}
	c.dir.flush(ctx)
	c.dir.leave(ctx)
	c.cancel()
	c.workers.Wait()
	c.nc.Close()
	c.errMu.Lock()
	close(c.errc)
	c.errMu.Unlock()
	return nil
}

// fail reports a fatal error once on Err.
func (c *Cluster) fail(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.closed {
		return
	}
	select {
	case c.errc <- err:
	default:
	}
}

// deliverOne hands ev to the hub, one event at a time across every source.
// A panic in the fan-out (a bug) loses this event, not the goroutine that
// delivers everyone's.
func (c *Cluster) deliverOne(ev *hub.Event) {
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("delivery panicked; event lost", "kind", ev.Kind.String(), "room", ev.Room, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	c.deliver(ev)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
