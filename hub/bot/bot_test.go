package bot_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"chatroom/hub"
	"chatroom/hub/bot"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type sink struct{ n atomic.Int64 }

func (s *sink) Deliver(*hub.Event) { s.n.Add(1) }
func (s *sink) Busy() bool         { return false }

// TestABotNeverHoldsUpTheRoom: a bot whose handler is stuck (and one whose
// handler panics) costs the room nothing: every message still reaches
// everyone else at once, the stuck bot drops what it cannot hold, and
// private messages to it are refused while it is behind.
func TestABotNeverHoldsUpTheRoom(t *testing.T) {
	ctx := context.Background()
	h, err := hub.New(hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	stuck, err := bot.Start(ctx, h, bot.Options{Nickname: "stuck", Queue: 8}, bot.HandlerFunc(func(context.Context, *bot.Bot, *hub.Event) {
		<-release
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	defer close(release)
	var handled atomic.Int64
	panicky, err := bot.Start(ctx, h, bot.Options{Nickname: "panicky"}, bot.HandlerFunc(func(_ context.Context, b *bot.Bot, ev *hub.Event) {
		if ev.Kind == hub.KindMessage && ev.Text == "boom" {
			panic("handler bug")
		}
		if ev.Kind == hub.KindMessage {
			handled.Add(1)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer panicky.Close()

	witness := &sink{}
	w, _ := h.Login(ctx, "witness", witness)
	before := witness.n.Load()
	_ = h.Publish(ctx, w.ID, "", "boom")
	const n = 1000
	for range n {
		if err := h.Publish(ctx, w.ID, "", "hi"); err != nil {
			t.Fatal(err)
		}
	}
	if got := witness.n.Load() - before; got != n+1 {
		t.Fatalf("witness got %d events while a bot was stuck, want %d", got, n+1)
	}
	if stuck.Dropped() == 0 {
		t.Fatal("the stuck bot dropped nothing: its queue should have overflowed")
	}
	if err := h.PrivateTo(ctx, w.ID, stuck.Self().ID, "psst"); err == nil {
		t.Fatal("a private message to a bot that is behind was accepted")
	}
	deadline := time.Now().Add(10 * time.Second)
	for handled.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the panicky bot handled %d of %d messages after its panic", handled.Load(), n)
		}
		time.Sleep(time.Millisecond) // the bot's progress has no event to wait on
	}
}
