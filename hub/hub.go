package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Subscriber is a member's connection as the hub sees it. Deliver is called
// with hub locks held, so it must return at once: queue, never write.
type Subscriber interface {
	// Deliver queues an event for the member. A subscriber that cannot keep
	// up disconnects itself; it must not block the hub.
	Deliver(ev *Event)
	// Busy reports whether the member is so far behind that messages for
	// it alone (private ones) are refused to their sender instead of being
	// queued: what others send privately must not be what gets a slow
	// reader cut off. Called with hub locks held, like Deliver.
	Busy() bool
}

// Observer is told of every fan-out; metrics implement it. It is called on
// the publisher's goroutine, so it must be cheap and must not block.
type Observer interface {
	FannedOut(kind Kind, recipients int, took time.Duration)
}

// Errors returned by the hub. Fronts show their text to the client.
var (
	ErrNicknameTaken   = errors.New("nickname is taken")
	ErrNicknameInvalid = errors.New("invalid nickname")
	ErrMessageInvalid  = errors.New("invalid message")
	ErrNotMember       = errors.New("not logged in")
	ErrShuttingDown    = errors.New("server shutting down")
	ErrRoomInvalid     = errors.New("invalid room name")
	ErrNotInRoom       = errors.New("not in that room")
	ErrAlreadyInRoom   = errors.New("already in that room")
	ErrTooManyRooms    = errors.New("too many rooms")
	ErrNoSuchMember    = errors.New("no such member")
	ErrRecipientBusy   = errors.New("recipient is not keeping up: try again later")
	ErrQueryInvalid    = errors.New("invalid search")
	// ErrHistoryUnavailable: the history store failed (the log says how).
	ErrHistoryUnavailable = errors.New("history is unavailable right now")
)

// Limits and defaults.
const (
	// Lobby is the room every member starts in.
	Lobby = "lobby"
	// MaxNicknameRunes is the longest nickname, in characters, after trimming.
	MaxNicknameRunes = 32
	// MaxRoomRunes is the longest room name, in characters.
	MaxRoomRunes = 32
	// MaxQueryRunes is the longest search query, in characters.
	MaxQueryRunes = 200
	// DefaultMaxMessageBytes is Options.MaxMessageBytes' default.
	DefaultMaxMessageBytes = 4096
	// DefaultHistoryOnJoin is Options.HistoryOnJoin's default.
	DefaultHistoryOnJoin = 100
	// DefaultMaxRooms is Options.MaxRooms' default.
	DefaultMaxRooms = 500
	// DefaultMaxRoomsPerMember is Options.MaxRoomsPerMember's default.
	DefaultMaxRoomsPerMember = 50
	// DefaultAnnounceLimit is Options.AnnounceLimit's default.
	DefaultAnnounceLimit = 1000
	// DefaultResumeLimit is Options.ResumeLimit's default.
	DefaultResumeLimit = 1000
	// DefaultMaxRoomsPerPeer is Options.MaxRoomsPerPeer's default.
	DefaultMaxRoomsPerPeer = 20
)

// Options configure a Hub. The zero value of every field is a documented
// default.
type Options struct {
	// Broker sequences and carries events. Default: a new MemoryBroker.
	Broker Broker
	// History keeps rooms' messages. Default: a new MemoryHistory.
	History History
	// HistoryOnJoin is how many recent messages a member gets on joining a
	// room. Default DefaultHistoryOnJoin; negative: none.
	HistoryOnJoin int
	// ResumeLimit is how many events a member resuming a room (joining it
	// from a Position) may have missed and still get all of; past that it
	// gets the latest messages and a gap. Default DefaultResumeLimit.
	ResumeLimit int
	// Epoch names this history: a Position from another epoch (another
	// database, or an in-memory server since restarted) cannot resume.
	// Default: random, so an in-memory hub is a new history each run; a
	// durable store passes its own.
	Epoch string
	// Rooms exist from the start, empty (a durable store's rooms after a
	// restart), as many as MaxRooms allows.
	Rooms []string
	// MaxRooms bounds the rooms that exist. A room nobody is in stays,
	// with its history, until room is needed for a new one: then the room
	// empty the longest is removed (and, with the in-memory broker and
	// history, forgotten: created again, it starts from seq 1). So empty
	// rooms never stop a room being created; only rooms with members count
	// against the limit in effect. Default DefaultMaxRooms.
	MaxRooms int
	// MaxRoomsPerPeer bounds the rooms that one address (LoginFrom's peer;
	// without one, one member) may have created and that still exist, so
	// that one address cannot take every room for itself. Default
	// DefaultMaxRoomsPerPeer.
	MaxRoomsPerPeer int
	// MaxRoomsPerMember bounds the rooms one member is in. Default
	// DefaultMaxRoomsPerMember.
	MaxRoomsPerMember int
	// AnnounceLimit is the room size above which joins and leaves are no
	// longer announced: in a room of N members every join costs N
	// deliveries, so N people arriving cost N² (12.5 million for 5000), and
	// nobody reads that scroll. Members still get the list in "joined" and
	// by request. Default DefaultAnnounceLimit; negative: always announce.
	AnnounceLimit int
	// Logger receives lifecycle logs. Default: discard.
	Logger *slog.Logger
	// MaxMessageBytes is the longest message text in UTF-8 bytes.
	// Default: DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Observer is told of every fan-out. Default: none.
	Observer Observer
	// Directory makes this hub one node of a cluster (see Directory):
	// nicknames are claimed cluster-wide, other nodes' members appear in
	// member lists and can be sent private messages, and every room event
	// is kept in History whether or not a member here is in the room.
	// Default: none, a hub alone.
	Directory Directory
	// FirstID is where member ids start (the first is FirstID+1): nodes of
	// a cluster give each its own range, so that an id names one member
	// cluster-wide. Default 0.
	FirstID int64
}

// Hub is the chat: members, the rooms they are in, and the order of each
// room's events. Create it with New; all methods are safe for concurrent use.
type Hub struct {
	opts     Options
	broker   Broker
	history  History
	log      *slog.Logger
	observer Observer

	// forget lets the in-memory broker and history drop what they keep
	// for a room the hub removes (see RoomForgetter).
	forget []RoomForgetter

	mu       sync.RWMutex // guards everything below
	byID     map[int64]*member
	byNick   map[string]*member // key: foldNickname
	rooms    map[string]*room
	roomKeys map[string]string // roomKey -> the room's name: no two rooms look alike
	created  map[string]int    // rooms that exist by who created them (quotaKey)
	shutting bool

	dir    Directory    // nil: alone
	lastID atomic.Int64 // the last member id given
}

type member struct {
	Identity
	sub   Subscriber
	peer  string   // the address it connected from, if known
	rooms []string // names of the rooms it is in
}

// quotaKey is who a room's creation counts against: the member's address,
// or the member itself when the address is unknown.
func (m *member) quotaKey() string {
	if m.peer != "" {
		return m.peer
	}
	return "#" + strconv.FormatInt(m.ID, 10)
}

type room struct {
	name       string
	members    []*member     // fan-out order; swap-removed on leave
	index      map[int64]int // member id -> position in members
	creator    string        // quotaKey of who created it
	emptySince time.Time     // when its last member left; zero while it has members
}

// RoomForgetter is implemented by a Broker or a History that keeps
// something per room in memory (a room's seq counter, its messages) and
// can let it go when the hub removes an empty room. A durable store does
// not implement it: it keeps a room's history by its own retention.
type RoomForgetter interface {
	ForgetRoom(room string)
}

var (
	_ RoomForgetter = (*MemoryBroker)(nil)
	_ RoomForgetter = (*MemoryHistory)(nil)
)

// New returns a hub subscribed to its broker.
func New(opts Options) (*Hub, error) {
	if opts.Broker == nil {
		opts.Broker = &MemoryBroker{}
	}
	if opts.History == nil {
		opts.History = &MemoryHistory{}
	}
	if opts.HistoryOnJoin == 0 {
		opts.HistoryOnJoin = DefaultHistoryOnJoin
	}
	if opts.ResumeLimit <= 0 {
		opts.ResumeLimit = DefaultResumeLimit
	}
	if opts.Epoch == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.Epoch = hex.EncodeToString(b[:])
	}
	if opts.MaxRooms <= 0 {
		opts.MaxRooms = DefaultMaxRooms
	}
	if opts.MaxRoomsPerPeer <= 0 {
		opts.MaxRoomsPerPeer = DefaultMaxRoomsPerPeer
	}
	if opts.MaxRoomsPerMember <= 0 {
		opts.MaxRoomsPerMember = DefaultMaxRoomsPerMember
	}
	if opts.AnnounceLimit == 0 {
		opts.AnnounceLimit = DefaultAnnounceLimit
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	h := &Hub{
		opts:     opts,
		broker:   opts.Broker,
		history:  opts.History,
		log:      opts.Logger,
		observer: opts.Observer,
		byID:     make(map[int64]*member),
		byNick:   make(map[string]*member),
		rooms:    make(map[string]*room),
		roomKeys: make(map[string]string),
		created:  make(map[string]int),
		dir:      opts.Directory,
	}
	h.lastID.Store(opts.FirstID)
	for _, name := range opts.Rooms {
		if len(h.rooms) >= opts.MaxRooms {
			break
		}
		if h.rooms[name] == nil {
			h.createRoomLocked(name, "").emptySince = time.Now()
		}
	}
	for _, x := range []any{opts.Broker, opts.History} {
		if f, ok := x.(RoomForgetter); ok {
			h.forget = append(h.forget, f)
		}
	}
	if err := h.broker.Subscribe(h.fanOut); err != nil {
		return nil, fmt.Errorf("hub: subscribe to broker: %w", err)
	}
	return h, nil
}

// fanOut hands one sequenced event to its recipients. The broker calls it
// one event at a time. Messages are recorded in history here, under the same
// read lock as their delivery, which is what lets JoinRoom snapshot history
// and register a member with nothing lost or repeated in between.
func (h *Hub) fanOut(ev *Event) {
	var start time.Time
	if h.observer != nil {
		start = time.Now()
	}
	n := h.deliver(ev)
	if h.observer != nil {
		h.observer.FannedOut(ev.Kind, n, time.Since(start))
	}
}

// deliver queues ev for its recipients under the read lock and
// returns how many there were. The lock is released by a defer: a panic
// below (a subscriber's or a store's bug) must not leave the hub locked for
// everyone while the publisher's goroutine recovers.
func (h *Hub) deliver(ev *Event) (n int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch {
	case ev.Kind == KindRefused:
		if m := h.byID[ev.From.ID]; m != nil {
			m.sub.Deliver(ev)
			n = 1
		}
	case ev.Kind == KindPrivate:
		for _, id := range []int64{ev.From.ID, ev.To.ID} {
			if m := h.byID[id]; m != nil && (n == 0 || ev.To.ID != ev.From.ID) {
				m.sub.Deliver(ev)
				n++
			}
		}
	case ev.Room == "":
		for _, m := range h.byID {
			m.sub.Deliver(ev)
		}
		n = len(h.byID)
	default:
		r := h.rooms[ev.Room]
		if r == nil {
			// In a cluster every node keeps every room's history,
			// so that a member may resume or search on any node.
			if h.dir != nil && Sequenced(ev.Kind) {
				h.history.Append(ev)
			}
			break
		}
		if Sequenced(ev.Kind) {
			h.history.Append(ev)
		}
		for _, m := range r.members {
			m.sub.Deliver(ev)
		}
		n = len(r.members)
	}
	return n
}

// update runs change with h.mu held, then publishes the announcements it
// returns. Announcing happens only after the lock is released: the lock order
// (broker, then hub) forbids publishing under it, and this is the one place
// that keeps to that for every membership change.
func (h *Hub) update(ctx context.Context, change func() ([]*Event, error)) error {
	announce, err := func() ([]*Event, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return change()
	}()
	for _, ev := range announce {
		h.publish(ctx, ev)
	}
	return err
}

// Login admits a member under nickname and puts it in the lobby. Before
// anything else the subscriber receives a KindWelcome event with its
// identity, then KindJoined for the lobby; then the join is announced there.
// It fails with ErrNicknameInvalid, ErrNicknameTaken or ErrShuttingDown.
func (h *Hub) Login(ctx context.Context, nickname string, sub Subscriber) (Identity, error) {
	return h.LoginFrom(ctx, "", nickname, sub, Position{})
}

// Position is where a member's view of a room ended: the history's epoch
// and the last seq it has. Joining from a Position resumes: the member
// gets exactly the events it missed (see KindJoined). The zero Position is
// a fresh join.
type Position struct {
	Epoch string
	Seq   uint64
}

// Epoch returns the history's epoch (see Options.Epoch).
func (h *Hub) Epoch() string { return h.opts.Epoch }

// LoginFrom is Login for a member connected from peer (its address, such
// as an IP), which per-address quotas count against, resuming the lobby
// from lobby (the zero Position: a fresh join).
func (h *Hub) LoginFrom(ctx context.Context, peer, nickname string, sub Subscriber, lobbyFrom Position) (Identity, error) {
	nick, err := CleanNickname(nickname)
	if err != nil {
		return Identity{}, err
	}
	key := nicknameKey(nick)
	self := Identity{ID: h.lastID.Add(1), Nickname: nick}
	if err := h.claim(ctx, key, self); err != nil {
		return Identity{}, err
	}
	err = h.update(ctx, func() ([]*Event, error) {
		if h.shutting {
			return nil, ErrShuttingDown
		}
		if _, taken := h.byNick[key]; taken || key == nicknameKey(System.Nickname) {
			return nil, ErrNicknameTaken
		}
		m := &member{Identity: self, sub: sub, peer: peer}
		h.byID[m.ID] = m
		h.byNick[key] = m
		// Delivered under the lock so nothing published can overtake them.
		sub.Deliver(&Event{Kind: KindWelcome, From: System, Subject: self, Epoch: h.opts.Epoch})
		lobby := h.rooms[Lobby]
		if lobby == nil {
			lobby = h.createRoomLocked(Lobby, "")
		}
		return h.enterLocked(m, lobby, lobbyFrom), nil
	})
	if err != nil {
		h.release(key, self)
		return Identity{}, err
	}
	h.present(self, []string{Lobby})
	h.log.Info("member joined", "id", self.ID, "nickname", nick)
	return self, nil
}

// JoinRoom puts member id in the named room (created on first join; a
// leading '#' is optional) and returns the room's clean name. The member
// first receives KindJoined with the room's members and recent history; then
// the join is announced to the room.
func (h *Hub) JoinRoom(ctx context.Context, id int64, name string) (string, error) {
	return h.JoinRoomFrom(ctx, id, name, Position{})
}

// JoinRoomFrom is JoinRoom resuming from a Position: KindJoined carries
// every event after it (Resumed), or, when that cannot be (too many
// missed, too old, another epoch), the latest messages and Gap.
func (h *Hub) JoinRoomFrom(ctx context.Context, id int64, name string, from Position) (string, error) {
	name, err := CleanRoom(name)
	if err != nil {
		return "", err
	}
	var who Identity
	var rooms []string
	err = h.update(ctx, func() ([]*Event, error) {
		m := h.byID[id]
		switch {
		case m == nil:
			return nil, ErrNotMember
		case slices.Contains(m.rooms, name):
			return nil, ErrAlreadyInRoom
		case len(m.rooms) >= h.opts.MaxRoomsPerMember:
			return nil, fmt.Errorf("%w: at most %d per member", ErrTooManyRooms, h.opts.MaxRoomsPerMember)
		}
		r := h.rooms[name]
		if r == nil {
			key := m.quotaKey()
			switch {
			case h.roomKeys[roomKey(name)] != "":
				return nil, fmt.Errorf("%w: looks like #%s", ErrRoomInvalid, h.roomKeys[roomKey(name)])
			case h.created[key] >= h.opts.MaxRoomsPerPeer:
				return nil, fmt.Errorf("%w: you have created %d that still exist; rooms nobody is in make way for new ones", ErrTooManyRooms, h.opts.MaxRoomsPerPeer)
			case len(h.rooms) >= h.opts.MaxRooms && !h.removeEmptiestLocked():
				return nil, fmt.Errorf("%w: the server has %d, all in use", ErrTooManyRooms, h.opts.MaxRooms)
			}
			r = h.createRoomLocked(name, key)
		}
		join := h.enterLocked(m, r, from)
		who, rooms = m.Identity, slices.Clone(m.rooms)
		return join, nil
	})
	if err != nil {
		return "", err
	}
	h.present(who, rooms)
	return name, nil
}

// LeaveRoom takes member id out of the named room; it receives KindLeft and
// the room is told.
func (h *Hub) LeaveRoom(ctx context.Context, id int64, name string) (string, error) {
	name, err := CleanRoom(name)
	if err != nil {
		return "", err
	}
	var who Identity
	var rooms []string
	err = h.update(ctx, func() ([]*Event, error) {
		m := h.byID[id]
		if m == nil {
			return nil, ErrNotMember
		}
		was, leave := h.exitLocked(m, name, DisconnectLeft.Reason)
		if !was {
			return nil, ErrNotInRoom
		}
		m.sub.Deliver(&Event{Kind: KindLeft, Room: name, From: System, Subject: m.Identity})
		who, rooms = m.Identity, slices.Clone(m.rooms)
		return leave, nil
	})
	if err != nil {
		return "", err
	}
	h.present(who, rooms)
	return name, nil
}

// Logout removes member id from the hub and every room, announcing the
// leave with reason in each. Logging out twice is a no-op. During shutdown
// leaves are not announced (everyone is leaving) unless the hub is one node
// of a cluster, whose other nodes' members stay.
func (h *Hub) Logout(ctx context.Context, id int64, reason string) {
	var who Identity
	_ = h.update(ctx, func() ([]*Event, error) {
		m, ok := h.byID[id]
		if !ok {
			return nil, nil
		}
		who = m.Identity
		var leaves []*Event
		for _, name := range slices.Clone(m.rooms) {
			_, leave := h.exitLocked(m, name, reason)
			leaves = append(leaves, leave...)
		}
		delete(h.byID, id)
		delete(h.byNick, nicknameKey(m.Nickname))
		if h.shutting && h.dir == nil {
			return nil, nil
		}
		return leaves, nil
	})
	if who.ID != 0 {
		h.present(who, nil)
		h.release(nicknameKey(who.Nickname), who)
		h.log.Info("member left", "id", id, "nickname", who.Nickname, "reason", reason)
	}
}

// Publish sends text from member id to a room it is in ("" means the lobby).
// It fails with ErrNotMember, ErrNotInRoom or ErrMessageInvalid.
func (h *Hub) Publish(ctx context.Context, id int64, roomName, text string) error {
	if err := h.checkMessage(text); err != nil {
		return err
	}
	from, name, err := h.inRoom(id, roomName)
	if err != nil {
		return err
	}
	return h.broker.Publish(ctx, &Event{Kind: KindMessage, Room: name, From: from, Text: text})
}

// Private sends text from member id to the member named to, and only to
// them (and back to the sender).
func (h *Hub) Private(ctx context.Context, id int64, to, text string) error {
	key := nicknameKey(strings.TrimSpace(to))
	return h.private(ctx, id, text, func() (*member, Identity, bool, string) {
		if m := h.byNick[key]; m != nil || h.dir == nil {
			return m, Identity{}, false, fmt.Sprintf("%q", to)
		}
		who, ok := h.dir.MemberByKey(key)
		return nil, who, ok, fmt.Sprintf("%q", to)
	})
}

// PrivateTo sends text from member id to member toID. Addressing the
// member rather than its nickname means a conversation cannot drift to
// someone else who takes the nickname after its owner left: it fails with
// ErrNoSuchMember instead.
func (h *Hub) PrivateTo(ctx context.Context, id, toID int64, text string) error {
	return h.private(ctx, id, text, func() (*member, Identity, bool, string) {
		if m := h.byID[toID]; m != nil || h.dir == nil {
			return m, Identity{}, false, "id " + strconv.FormatInt(toID, 10)
		}
		who, ok := h.dir.Member(toID)
		return nil, who, ok, "id " + strconv.FormatInt(toID, 10)
	})
}

// private checks text, finds both parties (recipient runs under the read
// lock and returns a member here, or another node's, and names whom it
// looked for) and publishes. Identities are copied under the lock: a
// member's Nickname changes under the write lock (Rename), so reading it
// after RUnlock would race with a rename. Whether another node's member is
// keeping up is its node's to know: there it may be dropped as slow.
func (h *Hub) private(ctx context.Context, id int64, text string, recipient func() (here *member, remote Identity, isRemote bool, wanted string)) error {
	if err := h.checkMessage(text); err != nil {
		return err
	}
	from, to, err := func() (Identity, Identity, error) {
		h.mu.RLock()
		defer h.mu.RUnlock()
		f := h.byID[id]
		r, remote, isRemote, wanted := recipient()
		switch {
		case f == nil:
			return Identity{}, Identity{}, ErrNotMember
		case isRemote:
			return f.Identity, remote, nil
		case r == nil:
			return Identity{}, Identity{}, fmt.Errorf("%w: %s", ErrNoSuchMember, wanted)
		case r != f && r.sub.Busy():
			return Identity{}, Identity{}, fmt.Errorf("%w: %s", ErrRecipientBusy, r.Nickname)
		}
		return f.Identity, r.Identity, nil
	}()
	if err != nil {
		return err
	}
	return h.broker.Publish(ctx, &Event{Kind: KindPrivate, From: from, To: to, Text: text})
}

// Typing tells the room that member id is typing.
func (h *Hub) Typing(ctx context.Context, id int64, roomName string) error {
	from, name, err := h.inRoom(id, roomName)
	if err != nil {
		return err
	}
	return h.broker.Publish(ctx, &Event{Kind: KindTyping, Room: name, From: from})
}

// Rename changes member id's nickname, announcing it in every room it is in,
// and returns the new identity.
func (h *Hub) Rename(ctx context.Context, id int64, nickname string) (Identity, error) {
	nick, err := CleanNickname(nickname)
	if err != nil {
		return Identity{}, err
	}
	key := nicknameKey(nick)
	var who Identity
	var old string
	var rooms []string
	claimed := false
	if h.dir != nil {
		h.mu.RLock()
		m := h.byID[id]
		same := m != nil && nicknameKey(m.Nickname) == key
		h.mu.RUnlock()
		if !same { // a new key, not only another spelling of this one's
			if err := h.claim(ctx, key, Identity{ID: id, Nickname: nick}); err != nil {
				return Identity{}, err
			}
			claimed = true
		}
	}
	err = h.update(ctx, func() ([]*Event, error) {
		m := h.byID[id]
		if m == nil {
			return nil, ErrNotMember
		}
		if other, taken := h.byNick[key]; (taken && other != m) || key == nicknameKey(System.Nickname) {
			return nil, ErrNicknameTaken
		}
		old = m.Nickname
		delete(h.byNick, nicknameKey(old))
		m.Nickname = nick
		h.byNick[key] = m
		who = m.Identity
		rooms = slices.Clone(m.rooms)
		renames := make([]*Event, 0, len(m.rooms))
		for _, name := range m.rooms {
			renames = append(renames, &Event{Kind: KindRename, Room: name, From: System, Subject: who, OldNickname: old})
		}
		return renames, nil
	})
	if err != nil {
		if claimed {
			h.release(key, Identity{ID: id, Nickname: nick})
		}
		return Identity{}, err
	}
	if claimed {
		h.release(nicknameKey(old), Identity{ID: id, Nickname: old})
	}
	h.present(who, rooms)
	h.log.Info("member renamed", "id", id, "old", old, "nickname", nick)
	return who, nil
}

// RoomHistory returns up to limit messages of a room member id is in, with
// Seq below before (0: the latest), oldest first.
func (h *Hub) RoomHistory(id int64, roomName string, before uint64, limit int) (string, []*Event, error) {
	_, name, err := h.inRoom(id, roomName)
	if err != nil {
		return "", nil, err
	}
	if before == 0 {
		return name, h.history.Recent(name, limit), nil
	}
	events, err := h.history.Before(name, before, limit)
	if err != nil {
		h.log.Error("read history", "room", name, "err", err)
		return "", nil, ErrHistoryUnavailable
	}
	return name, events, nil
}

// Search returns up to limit of the messages of a room member id is in
// whose text contains query (ignoring case), newest first.
func (h *Hub) Search(id int64, roomName, query string, limit int) (string, []*Event, error) {
	_, name, err := h.inRoom(id, roomName)
	if err != nil {
		return "", nil, err
	}
	query = strings.TrimSpace(query)
	switch n := utf8.RuneCountInString(query); {
	case n == 0:
		return "", nil, fmt.Errorf("%w: empty", ErrQueryInvalid)
	case n > MaxQueryRunes || !utf8.ValidString(query):
		return "", nil, fmt.Errorf("%w: 1 to %d characters", ErrQueryInvalid, MaxQueryRunes)
	}
	events, err := h.history.Search(name, query, limit)
	if err != nil {
		h.log.Error("search history", "room", name, "err", err)
		return "", nil, ErrHistoryUnavailable
	}
	return name, events, nil
}

// RoomInfo describes a room for a room list.
type RoomInfo struct {
	Name    string
	Members int
	Joined  bool // the asking member is in it
}

// Rooms lists every room, by name, marking those member id is in.
func (h *Hub) Rooms(id int64) []RoomInfo {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var mine []string
	if m := h.byID[id]; m != nil {
		mine = m.rooms
	}
	var remote map[string]int
	if h.dir != nil {
		remote = h.dir.RoomCounts()
	}
	out := make([]RoomInfo, 0, len(h.rooms)+len(remote))
	for name, r := range h.rooms {
		out = append(out, RoomInfo{Name: name, Members: len(r.members) + remote[name], Joined: slices.Contains(mine, name)})
	}
	for name, n := range remote {
		if h.rooms[name] == nil && n > 0 {
			out = append(out, RoomInfo{Name: name, Members: n})
		}
	}
	slices.SortFunc(out, func(a, b RoomInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// RoomMembers lists the members of a room member id is in.
func (h *Hub) RoomMembers(id int64, roomName string) (string, []Identity, error) {
	name, err := roomOrLobby(roomName)
	if err != nil {
		return "", nil, err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if _, err := h.inRoomLocked(id, name); err != nil {
		return "", nil, err
	}
	return name, h.membersLocked(h.rooms[name]), nil
}

// membersLocked lists up to MaxListed of r's members: those here first,
// then, in a cluster, other nodes'.
func (h *Hub) membersLocked(r *room) []Identity {
	here := identities(r.members[:min(len(r.members), MaxListed)])
	if h.dir == nil || len(here) >= MaxListed {
		return here
	}
	return append(here, h.dir.RoomMembers(r.name, MaxListed-len(here))...)
}

// Members returns every logged-in member in no particular order.
func (h *Hub) Members() []Identity {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]Identity, 0, len(h.byID))
	for _, m := range h.byID {
		out = append(out, m.Identity)
	}
	return out
}

// Len returns the number of logged-in members.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.byID)
}

// Shutdown stops admitting members and sends every member notice. Closing the
// connections is the fronts' job; their leaves are then not announced.
func (h *Hub) Shutdown(ctx context.Context, notice string) error {
	h.mu.Lock()
	already := h.shutting
	h.shutting = true
	h.mu.Unlock()
	if already {
		return nil
	}
	if err := h.broker.Publish(ctx, &Event{Kind: KindNotice, From: System, Text: notice}); err != nil {
		return fmt.Errorf("hub shutdown notice: %w", err)
	}
	return nil
}

// claim reserves a nickname key cluster-wide, in a cluster; alone, the
// check under Hub.mu is all there is.
func (h *Hub) claim(ctx context.Context, key string, who Identity) error {
	if h.dir == nil {
		return nil
	}
	h.mu.RLock()
	_, taken := h.byNick[key]
	h.mu.RUnlock()
	if taken || key == nicknameKey(System.Nickname) {
		return ErrNicknameTaken // known here: no need to ask the cluster
	}
	return h.dir.Claim(ctx, key, who)
}

// release gives back a key claim took.
func (h *Hub) release(key string, who Identity) {
	if h.dir != nil {
		h.dir.Release(key, who)
	}
}

// present tells the cluster which rooms member who is in now (nil: gone).
func (h *Hub) present(who Identity, rooms []string) {
	if h.dir != nil && who.ID != 0 {
		h.dir.Present(who, rooms)
	}
}

// publish hands an announcement to the broker, logging a failure: the
// change it announces has already happened.
func (h *Hub) publish(ctx context.Context, ev *Event) {
	if err := h.broker.Publish(ctx, ev); err != nil {
		h.log.Error("announce", "kind", ev.Kind.String(), "room", ev.Room, "err", err)
	}
}

// inRoom resolves roomName ("" is the lobby) and checks that member id is
// in it, returning the member's identity as of that moment.
func (h *Hub) inRoom(id int64, roomName string) (Identity, string, error) {
	name, err := roomOrLobby(roomName)
	if err != nil {
		return Identity{}, "", err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	who, err := h.inRoomLocked(id, name)
	return who, name, err
}

// inRoomLocked checks that member id is in the room with clean name name.
func (h *Hub) inRoomLocked(id int64, name string) (Identity, error) {
	m := h.byID[id]
	switch {
	case m == nil:
		return Identity{}, ErrNotMember
	case !slices.Contains(m.rooms, name):
		return Identity{}, fmt.Errorf("%w: %s", ErrNotInRoom, name)
	}
	return m.Identity, nil
}

// roomOrLobby cleans a room name from a request; "" is the lobby.
func roomOrLobby(roomName string) (string, error) {
	if roomName == "" {
		return Lobby, nil
	}
	return CleanRoom(roomName)
}

// announcedLocked reports whether joins and leaves are announced in r.
func (h *Hub) announcedLocked(r *room) bool {
	if h.opts.AnnounceLimit < 0 {
		return true
	}
	n := len(r.members)
	if h.dir != nil {
		n = max(n, h.dir.RoomSize(r.name))
	}
	return n <= h.opts.AnnounceLimit
}

// createRoomLocked creates the named room, counting it against creator's
// quota (none for the lobby, which everyone is in and which is never
// removed).
func (h *Hub) createRoomLocked(name, creator string) *room {
	r := &room{name: name, index: make(map[int64]int), creator: creator}
	h.rooms[name] = r
	h.roomKeys[roomKey(name)] = name
	if creator != "" {
		h.created[creator]++
	}
	return r
}

// removeEmptiestLocked removes the room that has been empty the longest,
// to make way for a new one, and reports whether there was one. Nothing
// is published in a room with no members, so nothing can be on its way
// to it (leaving the last member is not announced: nobody is left to tell).
// A linear scan: it runs only when a room is created at the limit.
func (h *Hub) removeEmptiestLocked() bool {
	var oldest *room
	for _, r := range h.rooms {
		if len(r.members) == 0 && r.name != Lobby && (oldest == nil || r.emptySince.Before(oldest.emptySince)) {
			oldest = r
		}
	}
	if oldest == nil {
		return false
	}
	delete(h.rooms, oldest.name)
	delete(h.roomKeys, roomKey(oldest.name))
	if oldest.creator != "" {
		if h.created[oldest.creator]--; h.created[oldest.creator] <= 0 {
			delete(h.created, oldest.creator)
		}
	}
	for _, f := range h.forget {
		f.ForgetRoom(oldest.name)
	}
	h.log.Debug("empty room removed", "room", oldest.name)
	return true
}

// enterLocked adds m to r and sends it the room's members and history, both
// taken under the write lock so that the next event it gets from r is the
// first one after that history. It returns the join to announce (none in a
// room too big for announcements).
func (h *Hub) enterLocked(m *member, r *room, from Position) []*Event {
	r.emptySince = time.Time{}
	r.index[m.ID] = len(r.members)
	r.members = append(r.members, m)
	m.rooms = append(m.rooms, r.name)
	var recent []*Event
	resumed, gap := false, false
	if from != (Position{}) {
		if from.Epoch == h.opts.Epoch {
			recent, resumed = h.history.After(r.name, from.Seq, h.opts.ResumeLimit)
		}
		gap = !resumed
	}
	if !resumed && h.opts.HistoryOnJoin > 0 {
		recent = h.history.Recent(r.name, h.opts.HistoryOnJoin)
	}
	m.sub.Deliver(&Event{Kind: KindJoined, Room: r.name, From: System, Subject: m.Identity,
		Members: h.membersLocked(r), History: recent, Resumed: resumed, Gap: gap})
	if !h.announcedLocked(r) {
		return nil
	}
	return []*Event{{Kind: KindJoin, Room: r.name, From: System, Subject: m.Identity}}
}

// exitLocked removes m from the named room, reporting whether it was there
// and returning the leave to announce (none in a room too big for
// announcements).
func (h *Hub) exitLocked(m *member, name, reason string) (was bool, announce []*Event) {
	i := slices.Index(m.rooms, name)
	if i < 0 {
		return false, nil
	}
	m.rooms = slices.Delete(m.rooms, i, i+1)
	r := h.rooms[name]
	pos := r.index[m.ID]
	last := r.members[len(r.members)-1]
	r.members[pos] = last
	r.index[last.ID] = pos
	r.members[len(r.members)-1] = nil
	r.members = r.members[:len(r.members)-1]
	delete(r.index, m.ID)
	if len(r.members) == 0 {
		r.emptySince = time.Now()
		if h.dir == nil {
			return true, nil // nobody left to tell
		}
		// In a cluster, members of the room may be on other nodes.
	}
	if !h.announcedLocked(r) {
		return true, nil
	}
	return true, []*Event{{Kind: KindLeave, Room: name, From: System, Subject: m.Identity, Reason: reason}}
}

func identities(ms []*member) []Identity {
	out := make([]Identity, len(ms))
	for i, m := range ms {
		out[i] = m.Identity
	}
	return out
}

func (h *Hub) checkMessage(text string) error {
	if strings.TrimSpace(text) == "" {
		return fmt.Errorf("%w: empty", ErrMessageInvalid)
	}
	if len(text) > h.opts.MaxMessageBytes {
		return fmt.Errorf("%w: longer than %d bytes", ErrMessageInvalid, h.opts.MaxMessageBytes)
	}
	if !utf8.ValidString(text) {
		return fmt.Errorf("%w: not UTF-8", ErrMessageInvalid)
	}
	for _, r := range text {
		if r != '\n' && r != '\t' && (unicode.IsControl(r) || isBidiControl(r)) {
			return fmt.Errorf("%w: control character %U", ErrMessageInvalid, r)
		}
	}
	return nil
}

// isBidiControl reports the invisible direction overrides that let a message
// display differently from what it says.
func isBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}
