package nats

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"chatroom/hub"
)

// LostReason is the reason given for the leave of a member whose node died.
const LostReason = "connection lost"

// directory is the Cluster's hub.Directory: the nickname registry
// (chatd-nicks), presence (chatd-presence: one key per member, NODE.ID,
// holding its nickname and rooms) and the nodes' liveness (chatd-nodes:
// node.NAME, "alive" or "dead"). Its view of presence is kept by watching
// the buckets; its writes (presence, releases) go out in order from one
// goroutine, so that a member's requests are never held up by NATS.
type directory struct {
	c *Cluster

	mu       sync.RWMutex         // guards everything below
	members  map[string]*presence // by presence key (NODE.ID), every node's
	byID     map[int64]*presence
	byKey    map[string]*presence // by hub.NicknameKey
	byRoom   map[string]map[*presence]struct{}
	lastSeen map[string]time.Time // nodes, by when last heard of (here)
	dead     map[string]bool      // nodes declared dead
	cleaned  map[string]bool      // dead nodes whose leaves this node announced
	claims   map[string]uint64    // this node's nickname keys, by revision
	online   bool                 // connected to NATS
	grace    time.Time            // no node is declared dead before this
	cleaning bool                 // a cleanup is running

	// The writer's queue: presence changes (coalesced per member: only
	// the latest matters) and releases, in order.
	qmu     sync.Mutex
	qcond   *sync.Cond
	ops     []op
	latest  map[int64]presenceValue
	pending map[int64]bool

	heartbeatRev uint64
	restart      chan struct{} // reconnected: watch again from scratch
}

// presence is one member of some node, as chatd-presence says.
type presence struct {
	node string
	key  string // hub.NicknameKey
	presenceValue
}

// presenceValue is the JSON value of a presence key.
type presenceValue struct {
	ID       int64    `json:"id"`
	Nickname string   `json:"nick"`
	Rooms    []string `json:"rooms"`
	gone     bool
}

type op struct {
	member int64  // a presence change of this member, or:
	key    string // a nickname to release (its KV key) ...
	rev    uint64 // ... at this revision
}

func (d *directory) init(c *Cluster) {
	d.c = c
	d.members = make(map[string]*presence)
	d.byID = make(map[int64]*presence)
	d.byKey = make(map[string]*presence)
	d.byRoom = make(map[string]map[*presence]struct{})
	d.lastSeen = make(map[string]time.Time)
	d.dead = make(map[string]bool)
	d.cleaned = make(map[string]bool)
	d.claims = make(map[string]uint64)
	d.latest = make(map[int64]presenceValue)
	d.pending = make(map[int64]bool)
	d.qcond = sync.NewCond(&d.qmu)
	d.restart = make(chan struct{}, 1)
	d.online = true
}

// start announces this node, watches presence and nodes, and starts the
// writer, the heartbeat and the dead-node check.
func (d *directory) start(ctx context.Context) error {
	c := d.c
	rev, err := c.nodes.Put(ctx, "node."+c.name, []byte("alive"))
	if err != nil {
		return fmt.Errorf("nats: announce node: %w", err)
	}
	d.heartbeatRev = rev
	d.mu.Lock()
	d.grace = time.Now().Add(c.opts.DeadAfter)
	d.mu.Unlock()
	ready := make(chan error, 1)
	c.workers.Go(func() { d.watch(ready) })
	if err := <-ready; err != nil {
		return err
	}
	// A node restarted under the same name finds its last life's members
	// still present (it was never declared dead): they are gone.
	d.mu.RLock()
	stale := d.hasMembersLocked(c.name)
	d.mu.RUnlock()
	if stale {
		c.log.Warn("members of this node's last run are still present: announcing them gone")
		d.cleanUp(c.name, false)
	}
	c.workers.Go(d.writer)
	c.workers.Go(d.heartbeat)
	c.workers.Go(func() {
		<-c.ctx.Done()
		d.qmu.Lock()
		d.qcond.Broadcast()
		d.qmu.Unlock()
	})
	return nil
}

// nickKV is a nickname key as a KV key: base64url, since a key may only
// hold letters, digits and "-/_=.".
func nickKV(key string) string { return "n." + base64.RawURLEncoding.EncodeToString([]byte(key)) }

func presenceKey(node string, id int64) string { return node + "." + strconv.FormatInt(id, 10) }

// Claim implements hub.Directory with a KV Create: one winner. A key held
// by a node that is dead is taken over (compare-and-delete first).
func (c *Cluster) Claim(ctx context.Context, key string, who hub.Identity) error {
	if c.nc.Status() != natsio.CONNECTED {
		return ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.PublishTimeout)
	defer cancel()
	k := nickKV(key)
	value := []byte(c.name + " " + strconv.FormatInt(who.ID, 10))
	for range 5 {
		rev, err := c.nicks.Create(ctx, k, value)
		if err == nil {
			c.dir.mu.Lock()
			c.dir.claims[key] = rev
			c.dir.mu.Unlock()
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			if isWrongLastSequence(err) {
				continue // a delete raced the create's tombstone check
			}
			c.log.Warn("claim nickname", "err", err)
			return ErrUnavailable
		}
		e, err := c.nicks.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue
		case err != nil:
			c.log.Warn("claim nickname", "err", err)
			return ErrUnavailable
		}
		owner, _, _ := strings.Cut(string(e.Value()), " ")
		if !c.dir.isDead(owner) || c.dir.justHeardOf(ctx, owner) {
			return hub.ErrNicknameTaken
		}
		if err := c.nicks.Delete(ctx, k, jetstream.LastRevision(e.Revision())); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return ErrUnavailable
		}
	}
	return hub.ErrNicknameTaken
}

// Release implements hub.Directory.
func (c *Cluster) Release(key string, who hub.Identity) {
	d := &c.dir
	d.mu.Lock()
	rev, ok := d.claims[key]
	delete(d.claims, key)
	d.mu.Unlock()
	if !ok {
		return
	}
	d.qmu.Lock()
	d.ops = append(d.ops, op{key: nickKV(key), rev: rev})
	d.qcond.Signal()
	d.qmu.Unlock()
}

// Present implements hub.Directory.
func (c *Cluster) Present(who hub.Identity, rooms []string) {
	d := &c.dir
	d.qmu.Lock()
	defer d.qmu.Unlock()
	d.latest[who.ID] = presenceValue{ID: who.ID, Nickname: who.Nickname, Rooms: rooms, gone: rooms == nil}
	if !d.pending[who.ID] {
		d.pending[who.ID] = true
		d.ops = append(d.ops, op{member: who.ID})
		d.qcond.Signal()
	}
}

// writer writes the queue to NATS, in order, retrying what fails while
// NATS is away.
func (d *directory) writer() {
	c := d.c
	for {
		d.qmu.Lock()
		for len(d.ops) == 0 && c.ctx.Err() == nil {
			d.qcond.Wait()
		}
		if len(d.ops) == 0 {
			d.qmu.Unlock()
			return
		}
		o := d.ops[0]
		var pv presenceValue
		if o.key == "" {
			// Read the latest state and let a later Present queue
			// again: what it says must be written after this.
			pv = d.latest[o.member]
			delete(d.pending, o.member)
		}
		d.qmu.Unlock()

		if err := d.apply(o, pv); err != nil {
			if c.ctx.Err() != nil {
				return // closed
			}
			select { // NATS is away: try again (the latest state, then)
			case <-c.ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		d.qmu.Lock()
		d.ops = d.ops[1:]
		if o.key == "" && !d.pending[o.member] && d.latest[o.member].gone {
			delete(d.latest, o.member)
		}
		d.qcond.Broadcast() // flush waits for an empty queue
		d.qmu.Unlock()
	}
}

// apply performs one queued write; an error means "try again".
func (d *directory) apply(o op, pv presenceValue) error {
	c := d.c
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.PublishTimeout)
	defer cancel()
	var err error
	switch {
	case o.key != "":
		err = c.nicks.Delete(ctx, o.key, jetstream.LastRevision(o.rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
			err = nil // no longer ours (taken over after we were thought dead)
		}
	case pv.gone:
		err = c.pres.Delete(ctx, presenceKey(c.name, o.member))
	default:
		b, _ := json.Marshal(pv)
		_, err = c.pres.Put(ctx, presenceKey(c.name, o.member), b)
	}
	if err != nil {
		c.log.Debug("directory write", "err", err)
	}
	return err
}

// flush waits until what is queued is written, or ctx ends.
func (d *directory) flush(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		d.qmu.Lock()
		d.qcond.Broadcast()
		d.qmu.Unlock()
	})
	defer stop()
	d.qmu.Lock()
	defer d.qmu.Unlock()
	for len(d.ops) > 0 && ctx.Err() == nil && d.c.ctx.Err() == nil {
		d.qcond.Wait()
	}
}

// leave removes this node's entry, so that nobody waits DeadAfter for it.
func (d *directory) leave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = d.c.nodes.Delete(ctx, "node."+d.c.name)
}

// heartbeat tells the cluster this node is alive, every DeadAfter/5, and
// checks the others. It writes with compare-and-set on its own last
// write: if another node marked this one dead meanwhile, the write fails
// and this node stops.
func (d *directory) heartbeat() {
	c := d.c
	every := max(c.opts.DeadAfter/5, 20*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if c.nc.Status() == natsio.CONNECTED {
			ctx, cancel := context.WithTimeout(c.ctx, every)
			rev, err := c.nodes.Update(ctx, "node."+c.name, []byte("alive"), d.heartbeatRev)
			cancel()
			switch {
			case err == nil:
				d.heartbeatRev = rev
			case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound):
				c.log.Error("this node was declared dead while cut off from the cluster; its members were announced gone: stopping")
				c.fail(errors.New("nats: this node was declared dead by the cluster"))
				return
			}
		}
		d.check()
	}
}

// isDead reports whether node is declared dead, or silent for DeadAfter.
func (d *directory) isDead(node string) bool {
	if node == d.c.name {
		return false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.dead[node] {
		return true
	}
	seen, ok := d.lastSeen[node]
	if !ok {
		// Never heard of since this node started (or came back): a node
		// that is alive heartbeats, so past the grace period it is gone
		// (one that left while a nickname of its was still held).
		return time.Now().After(d.grace)
	}
	return time.Since(seen) > d.c.opts.DeadAfter && time.Now().After(d.grace)
}

// justHeardOf asks the nodes bucket about a node never heard of here (its
// heartbeat may not have reached this node's watch yet: it started a
// moment ago): if it says the node is alive, the node counts as heard of
// now, so it is dead only after DeadAfter of silence like any other.
func (d *directory) justHeardOf(ctx context.Context, node string) bool {
	d.mu.RLock()
	_, known := d.lastSeen[node]
	d.mu.RUnlock()
	if known {
		return false
	}
	e, err := d.c.nodes.Get(ctx, "node."+node)
	if err != nil || string(e.Value()) != "alive" {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, known := d.lastSeen[node]; !known && !d.dead[node] {
		d.lastSeen[node] = time.Now()
	}
	return true
}

func (d *directory) disconnected() {
	d.mu.Lock()
	d.online = false
	d.mu.Unlock()
}

// reconnected gives every node a new DeadAfter: while this node could not
// hear them, their silence meant nothing. Presence is watched again.
func (d *directory) reconnected() {
	d.mu.Lock()
	d.online = true
	d.grace = time.Now().Add(d.c.opts.DeadAfter)
	now := time.Now()
	for n := range d.lastSeen {
		d.lastSeen[n] = now
	}
	d.mu.Unlock()
	select {
	case d.restart <- struct{}{}:
	default:
	}
}

// check declares silent nodes dead and, on the leader (the live node with
// the lowest name), cleans up after them.
func (d *directory) check() {
	now := time.Now()
	d.mu.Lock()
	if !d.online || now.Before(d.grace) {
		d.mu.Unlock()
		return
	}
	leader := d.c.name
	for n, seen := range d.lastSeen {
		if n == d.c.name || d.dead[n] {
			continue
		}
		if now.Sub(seen) > d.c.opts.DeadAfter {
			d.dead[n] = true
			d.c.log.Warn("node is dead: its members are gone", "dead", n, "silent_for", now.Sub(seen).Round(time.Millisecond))
			continue
		}
		if n < leader {
			leader = n
		}
	}
	var todo []string
	if leader == d.c.name && !d.cleaning {
		for n := range d.dead {
			if !d.cleaned[n] || d.hasMembersLocked(n) {
				todo = append(todo, n)
			}
		}
		d.cleaning = len(todo) > 0
	}
	d.mu.Unlock()
	if len(todo) > 0 {
		d.c.workers.Go(func() {
			for _, n := range todo {
				d.cleanUp(n, true)
			}
			d.mu.Lock()
			d.cleaning = false
			d.mu.Unlock()
		})
	}
}

func (d *directory) hasMembersLocked(node string) bool {
	for _, p := range d.members {
		if p.node == node {
			return true
		}
	}
	return false
}

// cleanUp, on the leader, announces a dead node's members leaving each of
// their rooms (once), frees their nicknames, removes their presence and,
// with markDead, marks the node dead for good (not for this node's own
// last run, cleaned up at start).
func (d *directory) cleanUp(node string, markDead bool) {
	c := d.c
	d.mu.RLock()
	var lost []*presence
	for _, p := range d.members {
		if p.node == node {
			lost = append(lost, p)
		}
	}
	announce := !d.cleaned[node]
	byRoom := make(map[string][]*hub.Event)
	if announce {
		now := time.Now()
		for _, p := range lost {
			for _, room := range p.Rooms {
				if n := len(d.byRoom[room]); c.opts.AnnounceLimit >= 0 && n > c.opts.AnnounceLimit {
					continue // too big a room to announce in (hub.Options.AnnounceLimit)
				}
				byRoom[room] = append(byRoom[room], &hub.Event{Kind: hub.KindLeave, Room: room, Time: now, From: hub.System,
					Subject: hub.Identity{ID: p.ID, Nickname: p.Nickname}, Reason: LostReason})
			}
		}
	}
	d.mu.RUnlock()
	if announce {
		var wg sync.WaitGroup
		for _, events := range byRoom {
			wg.Go(func() {
				if err := c.publishRoom(c.ctx, events); err != nil {
					c.log.Warn("announce a dead node's members leaving", "room", events[0].Room, "err", err)
				}
			})
		}
		wg.Wait()
		d.mu.Lock()
		d.cleaned[node] = true
		d.mu.Unlock()
		c.log.Info("dead node cleaned up", "dead", node, "members", len(lost))
	}
	ctx, cancel := context.WithTimeout(c.ctx, 4*c.opts.PublishTimeout)
	defer cancel()
	for _, p := range lost {
		k := nickKV(p.key)
		if e, err := c.nicks.Get(ctx, k); err == nil {
			if owner, _, _ := strings.Cut(string(e.Value()), " "); owner == node {
				_ = c.nicks.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
			}
		}
		_ = c.pres.Delete(ctx, presenceKey(node, p.ID))
	}
	if markDead {
		_, _ = c.nodes.Put(ctx, "node."+node, []byte("dead"))
	}
}

// watch keeps the view of presence and nodes, watching both buckets from
// scratch again after every reconnection. ready gets the first
// watch's outcome, once its initial values are in.
func (d *directory) watch(ready chan<- error) {
	c := d.c
	first := true
	for c.ctx.Err() == nil {
		err := d.watchOnce(func() {
			if first {
				first = false
				ready <- nil
			}
		})
		if first {
			first = false
			ready <- err
			return
		}
		if err != nil && c.ctx.Err() == nil {
			c.log.Debug("watch presence", "err", err)
			select {
			case <-c.ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// watchOnce watches until the connection is lost and back (restart) or
// the cluster closes.
func (d *directory) watchOnce(initialised func()) error {
	c := d.c
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	pw, err := c.pres.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("nats: watch presence: %w", err)
	}
	defer func() { _ = pw.Stop() }()
	nw, err := c.nodes.Watch(ctx, "node.*")
	if err != nil {
		return fmt.Errorf("nats: watch nodes: %w", err)
	}
	defer func() { _ = nw.Stop() }()

	fresh := make(map[string]*presence) // the initial values, replacing the view
	presUpdates, nodeUpdates := pw.Updates(), nw.Updates()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.restart:
			return nil
		case e, ok := <-nodeUpdates:
			if !ok {
				return errors.New("nats: node watch ended")
			}
			if e != nil {
				d.nodeSeen(e)
			}
		case e, ok := <-presUpdates:
			if !ok {
				return errors.New("nats: presence watch ended")
			}
			if e == nil { // the initial values are in
				d.replace(fresh)
				fresh = nil
				initialised()
				continue
			}
			if fresh != nil {
				if p := parsePresence(e); p != nil {
					fresh[e.Key()] = p
				}
				continue
			}
			d.update(e)
		}
	}
}

func parsePresence(e jetstream.KeyValueEntry) *presence {
	if e.Operation() != jetstream.KeyValuePut {
		return nil
	}
	node, _, ok := strings.Cut(e.Key(), ".")
	var pv presenceValue
	if !ok || json.Unmarshal(e.Value(), &pv) != nil || pv.ID == 0 {
		return nil
	}
	return &presence{node: node, key: hub.NicknameKey(pv.Nickname), presenceValue: pv}
}

func (d *directory) nodeSeen(e jetstream.KeyValueEntry) {
	node := strings.TrimPrefix(e.Key(), "node.")
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case e.Operation() != jetstream.KeyValuePut:
		delete(d.lastSeen, node) // left gracefully; its presence goes too
		if !d.hasMembersLocked(node) {
			delete(d.dead, node)
			delete(d.cleaned, node)
		} else {
			d.lastSeen[node] = e.Created() // dead after DeadAfter unless its members go
		}
	case string(e.Value()) == "dead":
		d.dead[node] = true
		d.cleaned[node] = true // announced by whoever marked it
	default:
		if !d.dead[node] {
			d.lastSeen[node] = time.Now()
		}
	}
}

// replace swaps the whole view of presence for fresh (after a new watch).
func (d *directory) replace(fresh map[string]*presence) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, p := range d.members {
		d.removeLocked(k, p)
	}
	for k, p := range fresh {
		d.addLocked(k, p)
	}
}

func (d *directory) update(e jetstream.KeyValueEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.members[e.Key()]; old != nil {
		d.removeLocked(e.Key(), old)
	}
	if p := parsePresence(e); p != nil {
		d.addLocked(e.Key(), p)
	}
}

func (d *directory) addLocked(k string, p *presence) {
	d.members[k] = p
	d.byID[p.ID] = p
	d.byKey[p.key] = p
	for _, r := range p.Rooms {
		if d.byRoom[r] == nil {
			d.byRoom[r] = make(map[*presence]struct{})
		}
		d.byRoom[r][p] = struct{}{}
	}
	if _, ok := d.lastSeen[p.node]; !ok && p.node != d.c.name {
		// First heard of through a member: if it never heartbeats, it
		// is dead DeadAfter from now.
		d.lastSeen[p.node] = time.Now()
	}
}

func (d *directory) removeLocked(k string, p *presence) {
	delete(d.members, k)
	if d.byID[p.ID] == p {
		delete(d.byID, p.ID)
	}
	if d.byKey[p.key] == p {
		delete(d.byKey, p.key)
	}
	for _, r := range p.Rooms {
		delete(d.byRoom[r], p)
		if len(d.byRoom[r]) == 0 {
			delete(d.byRoom, r)
		}
	}
}

// elsewhereLocked reports whether p is a live member of another node.
func (d *directory) elsewhereLocked(p *presence) bool {
	return p != nil && p.node != d.c.name && !d.dead[p.node]
}

// Member implements hub.Directory.
func (c *Cluster) Member(id int64) (hub.Identity, bool) {
	d := &c.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	if p := d.byID[id]; d.elsewhereLocked(p) {
		return hub.Identity{ID: p.ID, Nickname: p.Nickname}, true
	}
	return hub.Identity{}, false
}

// MemberByKey implements hub.Directory.
func (c *Cluster) MemberByKey(key string) (hub.Identity, bool) {
	d := &c.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	if p := d.byKey[key]; d.elsewhereLocked(p) {
		return hub.Identity{ID: p.ID, Nickname: p.Nickname}, true
	}
	return hub.Identity{}, false
}

// RoomMembers implements hub.Directory.
func (c *Cluster) RoomMembers(room string, limit int) []hub.Identity {
	d := &c.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []hub.Identity
	for p := range d.byRoom[room] {
		if len(out) >= limit {
			break
		}
		if d.elsewhereLocked(p) {
			out = append(out, hub.Identity{ID: p.ID, Nickname: p.Nickname})
		}
	}
	slices.SortFunc(out, func(a, b hub.Identity) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// RoomCounts implements hub.Directory.
func (c *Cluster) RoomCounts() map[string]int {
	d := &c.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make(map[string]int)
	for room, ps := range d.byRoom {
		for p := range ps {
			if d.elsewhereLocked(p) {
				out[room]++
			}
		}
	}
	return out
}

// RoomSize implements hub.Directory: every node's members, this one's
// included, as chatd-presence says.
func (c *Cluster) RoomSize(room string) int {
	d := &c.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.byRoom[room])
}
