package hub_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"chatroom/hub"
)

// counter is the cheapest possible member: it only counts deliveries, so
// the benchmark measures the hub's fan-out path itself.
type counter struct{ n atomic.Int64 }

func (c *counter) Deliver(*hub.Event) { c.n.Add(1) }
func (c *counter) Busy() bool         { return false }

// BenchmarkFanOut publishes one message to a room of N in-memory members;
// ns/op divided by N is the hub's cost per delivery.
func BenchmarkFanOut(b *testing.B) {
	for _, members := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			ctx := context.Background()
			h, err := hub.New(hub.Options{HistoryOnJoin: -1, AnnounceLimit: -1})
			if err != nil {
				b.Fatal(err)
			}
			var sender hub.Identity
			for i := range members {
				id, err := h.Login(ctx, fmt.Sprint("m", i), &counter{})
				if err != nil {
					b.Fatal(err)
				}
				sender = id
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := h.Publish(ctx, sender.ID, "", "hello, everyone"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
		})
	}
}
