package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Subscriber is a member's connection as the hub sees it. Both methods are
// called with hub locks held, so they must return at once: queue, never write.
type Subscriber interface {
	// Deliver queues an event for the member. A subscriber that cannot keep
	// up disconnects itself; it must not block the hub.
	Deliver(ev *Event)
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
)

// Limits on names and messages.
const (
	// MaxNicknameRunes is the longest nickname, in characters, after trimming.
	MaxNicknameRunes = 32
	// DefaultMaxMessageBytes is Options.MaxMessageBytes' default.
	DefaultMaxMessageBytes = 4096
)

// Options configure a Hub. The zero value of every field is a documented
// default.
type Options struct {
	// Broker sequences and carries events. Default: a new MemoryBroker.
	Broker Broker
	// Logger receives lifecycle logs. Default: discard.
	Logger *slog.Logger
	// MaxMessageBytes is the longest message text in UTF-8 bytes.
	// Default: DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Observer is told of every fan-out. Default: none.
	Observer Observer
}

// Hub is one chat room. Create it with New; all methods are safe for
// concurrent use.
type Hub struct {
	broker   Broker
	log      *slog.Logger
	maxBytes int
	observer Observer

	mu       sync.RWMutex // guards everything below
	members  []*member    // fan-out order; swap-removed on leave
	byID     map[int64]*member
	byNick   map[string]*member // key: foldNickname
	lastID   int64
	shutting bool
}

type member struct {
	Identity
	sub   Subscriber
	index int // position in Hub.members
}

// New returns a hub subscribed to its broker.
func New(opts Options) (*Hub, error) {
	h := &Hub{
		broker:   opts.Broker,
		log:      opts.Logger,
		maxBytes: opts.MaxMessageBytes,
		observer: opts.Observer,
		byID:     make(map[int64]*member),
		byNick:   make(map[string]*member),
	}
	if h.broker == nil {
		h.broker = &MemoryBroker{}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBytes <= 0 {
		h.maxBytes = DefaultMaxMessageBytes
	}
	if err := h.broker.Subscribe(h.fanOut); err != nil {
		return nil, fmt.Errorf("hub: subscribe to broker: %w", err)
	}
	return h, nil
}

// fanOut hands one sequenced event to every member. The broker calls it one
// event at a time.
func (h *Hub) fanOut(ev *Event) {
	var start time.Time
	if h.observer != nil {
		start = time.Now()
	}
	h.mu.RLock()
	for _, m := range h.members {
		m.sub.Deliver(ev)
	}
	n := len(h.members)
	h.mu.RUnlock()
	if h.observer != nil {
		h.observer.FannedOut(ev.Kind, n, time.Since(start))
	}
}

// Join admits a member under nickname. Before anything else the subscriber
// receives a KindWelcome event with its identity and the member list; then
// the join is announced to the room. It fails with ErrNicknameInvalid,
// ErrNicknameTaken or ErrShuttingDown.
func (h *Hub) Join(ctx context.Context, nickname string, sub Subscriber) (Identity, error) {
	nick, err := CleanNickname(nickname)
	if err != nil {
		return Identity{}, err
	}
	key := foldNickname(nick)

	h.mu.Lock()
	if h.shutting {
		h.mu.Unlock()
		return Identity{}, ErrShuttingDown
	}
	if _, taken := h.byNick[key]; taken || key == foldNickname(System.Nickname) {
		h.mu.Unlock()
		return Identity{}, ErrNicknameTaken
	}
	h.lastID++
	m := &member{Identity: Identity{ID: h.lastID, Nickname: nick}, sub: sub, index: len(h.members)}
	h.members = append(h.members, m)
	h.byID[m.ID] = m
	h.byNick[key] = m
	roster := make([]Identity, len(h.members))
	for i, other := range h.members {
		roster[i] = other.Identity
	}
	// Delivered under the lock so nothing the room publishes can overtake it.
	sub.Deliver(&Event{Kind: KindWelcome, From: System, Subject: m.Identity, Members: roster})
	h.mu.Unlock()

	h.log.Info("member joined", "id", m.ID, "nickname", nick)
	if err := h.broker.Publish(ctx, &Event{Kind: KindJoin, From: System, Subject: m.Identity}); err != nil {
		h.log.Error("announce join", "id", m.ID, "err", err)
	}
	return m.Identity, nil
}

// Leave removes member id and announces it with reason. Leaving twice is a
// no-op. During shutdown leaves are not announced: everyone is leaving.
func (h *Hub) Leave(ctx context.Context, id int64, reason string) {
	h.mu.Lock()
	m, ok := h.byID[id]
	if !ok {
		h.mu.Unlock()
		return
	}
	last := h.members[len(h.members)-1]
	h.members[m.index] = last
	last.index = m.index
	h.members[len(h.members)-1] = nil
	h.members = h.members[:len(h.members)-1]
	delete(h.byID, id)
	delete(h.byNick, foldNickname(m.Nickname))
	shutting := h.shutting
	h.mu.Unlock()

	h.log.Info("member left", "id", id, "nickname", m.Nickname, "reason", reason)
	if shutting {
		return
	}
	if err := h.broker.Publish(ctx, &Event{Kind: KindLeave, From: System, Subject: m.Identity, Reason: reason}); err != nil {
		h.log.Error("announce leave", "id", id, "err", err)
	}
}

// Publish sends text from member id to the room. It fails with ErrNotMember
// or ErrMessageInvalid (wrapped with the reason).
func (h *Hub) Publish(ctx context.Context, id int64, text string) error {
	if err := h.checkMessage(text); err != nil {
		return err
	}
	h.mu.RLock()
	m, ok := h.byID[id]
	h.mu.RUnlock()
	if !ok {
		return ErrNotMember
	}
	if err := h.broker.Publish(ctx, &Event{Kind: KindMessage, From: m.Identity, Text: text}); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// Members returns the current members in no particular order.
func (h *Hub) Members() []Identity {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]Identity, len(h.members))
	for i, m := range h.members {
		out[i] = m.Identity
	}
	return out
}

// Len returns the number of members.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.members)
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

func (h *Hub) checkMessage(text string) error {
	if strings.TrimSpace(text) == "" {
		return fmt.Errorf("%w: empty", ErrMessageInvalid)
	}
	if len(text) > h.maxBytes {
		return fmt.Errorf("%w: longer than %d bytes", ErrMessageInvalid, h.maxBytes)
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

// CleanNickname trims nickname and checks the rules: 1 to MaxNicknameRunes
// characters, valid UTF-8, no control or invisible formatting characters.
func CleanNickname(nickname string) (string, error) {
	nick := strings.TrimSpace(nickname)
	switch n := utf8.RuneCountInString(nick); {
	case !utf8.ValidString(nick):
		return "", fmt.Errorf("%w: not UTF-8", ErrNicknameInvalid)
	case n == 0:
		return "", fmt.Errorf("%w: empty", ErrNicknameInvalid)
	case n > MaxNicknameRunes:
		return "", fmt.Errorf("%w: longer than %d characters", ErrNicknameInvalid, MaxNicknameRunes)
	}
	for _, r := range nick {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return "", fmt.Errorf("%w: control character %U", ErrNicknameInvalid, r)
		}
	}
	return nick, nil
}

// isBidiControl reports the invisible direction overrides that let a message
// display differently from what it says.
func isBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// foldNickname is the key under which nicknames are unique: case-insensitive.
func foldNickname(nick string) string {
	return strings.ToLower(strings.ToUpper(nick))
}
