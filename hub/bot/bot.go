// Package bot runs members that live in the server: a bot has a nickname
// and no socket. It receives what the hub delivers to it (room events, and
// private messages addressed to it) and answers through the same hub calls
// a connection makes.
//
// A bot can never hold up fan-out: Deliver only puts the event in a bounded
// queue, and a bot that falls Queue events behind loses the newest (counted
// in Dropped) rather than making the hub wait; while its queue is more than
// half full, private messages to it are refused to their senders, as for a
// slow connection. Its Handler runs on one goroutine of the bot's own, one
// event at a time, so a handler's state needs no lock; a panic in it is
// recovered and logged, and the bot carries on with the next event.
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"chatroom/hub"
)

// Handler reacts to what a bot receives.
type Handler interface {
	// Handle is called for each event delivered to the bot, except the
	// echoes of what the bot itself sent, one at a time, on the bot's
	// goroutine.
	Handle(ctx context.Context, b *Bot, ev *hub.Event)
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(ctx context.Context, b *Bot, ev *hub.Event)

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, b *Bot, ev *hub.Event) { f(ctx, b, ev) }

// DefaultQueue is Options.Queue's default.
const DefaultQueue = 1024

// Options configure a bot. The zero value of every field but Nickname is a
// documented default.
type Options struct {
	// Nickname is the bot's name, under the same rules as anyone's.
	Nickname string
	// Rooms the bot joins besides the lobby.
	Rooms []string
	// Queue bounds the events waiting for the handler. Default DefaultQueue.
	Queue int
	// Logger receives the bot's errors. Default: discard.
	Logger *slog.Logger
}

// Bot is a running bot. Start it with Start; Close it.
type Bot struct {
	h       *hub.Hub
	self    hub.Identity
	handler Handler
	log     *slog.Logger
	events  chan *hub.Event
	dropped atomic.Int64

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Start logs a bot in under opts.Nickname, joins its rooms and starts its
// goroutine.
func Start(ctx context.Context, h *hub.Hub, opts Options, handler Handler) (*Bot, error) {
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Bot{h: h, handler: handler, log: opts.Logger.With("bot", opts.Nickname),
		events: make(chan *hub.Event, opts.Queue), done: make(chan struct{})}
	self, err := h.Login(ctx, opts.Nickname, b)
	if err != nil {
		return nil, fmt.Errorf("bot %s: log in: %w", opts.Nickname, err)
	}
	b.self = self
	for _, room := range opts.Rooms {
		if _, err := h.JoinRoom(ctx, self.ID, room); err != nil && !errors.Is(err, hub.ErrAlreadyInRoom) {
			h.Logout(ctx, self.ID, "left")
			return nil, fmt.Errorf("bot %s: join %s: %w", opts.Nickname, room, err)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	go b.run(runCtx)
	return b, nil
}

// Self is the bot's identity.
func (b *Bot) Self() hub.Identity { return b.self }

// Deliver implements hub.Subscriber: it queues ev, or drops it if the bot is
// Queue events behind. It never blocks.
func (b *Bot) Deliver(ev *hub.Event) {
	select {
	case b.events <- ev:
	default:
		b.dropped.Add(1)
	}
}

// Busy implements hub.Subscriber: the queue is more than half full.
func (b *Bot) Busy() bool { return 2*len(b.events) > cap(b.events) }

// Dropped is how many events the bot lost to a full queue.
func (b *Bot) Dropped() int64 { return b.dropped.Load() }

// Say sends text to a room the bot is in ("" is the lobby).
func (b *Bot) Say(ctx context.Context, room, text string) error {
	return b.h.Publish(ctx, b.self.ID, room, text)
}

// Tell sends text privately to member id.
func (b *Bot) Tell(ctx context.Context, id int64, text string) error {
	return b.h.PrivateTo(ctx, b.self.ID, id, text)
}

// Close logs the bot out and waits for its goroutine; events still queued
// are not handled. Closing again does nothing.
func (b *Bot) Close() error {
	b.once.Do(func() {
		b.h.Logout(context.Background(), b.self.ID, "left")
		b.cancel()
		<-b.done
	})
	return nil
}

func (b *Bot) run(ctx context.Context) {
	defer close(b.done)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-b.events:
			if ev.From.ID == b.self.ID && ev.Kind != hub.KindRefused {
				continue // the echo of its own message
			}
			b.handle(ctx, ev)
		}
	}
}

// handle runs the handler for one event, containing a panic to it.
func (b *Bot) handle(ctx context.Context, ev *hub.Event) {
	defer func() {
		if p := recover(); p != nil {
			b.log.Error("panic in bot handler", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	b.handler.Handle(ctx, b, ev)
}

var _ hub.Subscriber = (*Bot)(nil)
