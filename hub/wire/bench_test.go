package wire

import (
	"strings"
	"testing"
	"time"

	"chatroom/hub"
)

func benchEvent(text string) *hub.Event {
	return &hub.Event{Kind: hub.KindMessage, Room: "lobby", Seq: 12345, Time: time.Now(),
		From: hub.Identity{ID: 42, Nickname: "alice"}, Text: text}
}

// BenchmarkEncodeExtended is the cost of encoding one message once: what
// every recipient of a fan-out shares.
func BenchmarkEncodeExtended(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		encodeExtended(benchEvent("hello, everyone: a typical short chat line"))
	}
}

// BenchmarkEncodeOriginal is the same for the original client's shape,
// including the split into pushes under 1024 bytes.
func BenchmarkEncodeOriginal(b *testing.B) {
	for _, size := range []int{40, 3000} {
		text := strings.Repeat("字", size/3)
		b.Run(map[int]string{40: "short", 3000: "split"}[size], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				encodeOriginal(benchEvent(text))
			}
		})
	}
}

// BenchmarkEncodePerDelivery is what each recipient pays after the first:
// a cache hit on the event's encoding.
func BenchmarkEncodePerDelivery(b *testing.B) {
	ev := benchEvent("hello, everyone: a typical short chat line")
	EncodeEvent(ev, true)
	b.ReportAllocs()
	for b.Loop() {
		EncodeEvent(ev, true)
	}
}
