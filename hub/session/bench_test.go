package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chatroom/hub"
)

// discardConn is a connection whose peer reads instantly: writes only count
// frames. It lets the benchmark measure everything but the kernel.
type discardConn struct {
	frames  atomic.Int64
	closed  chan struct{}
	once    sync.Once
	waiting chan []byte
}

func (c *discardConn) ReadFrame() ([]byte, error) {
	select {
	case f := <-c.waiting:
		return f, nil
	case <-c.closed:
		return nil, context.Canceled
	}
}

func (c *discardConn) WriteFrames(frames [][]byte, _ time.Time) error {
	c.frames.Add(int64(len(frames)))
	return nil
}

func (c *discardConn) TryWriteFrames(frames [][]byte) (bool, error) {
	c.frames.Add(int64(len(frames)))
	return true, nil
}

func (c *discardConn) Close(hub.Disconnect) error { c.Abort(); return nil }
func (c *discardConn) Abort()                     { c.once.Do(func() { close(c.closed) }) }

// BenchmarkDeliveryPath publishes to a room of N real sessions (queue,
// writers, encoding once per event, batching) over connections that cost
// nothing to write to: the server's per-delivery cost above the write
// syscall, with a Flusher (as chatd runs) and with a writer goroutine per
// session.
func BenchmarkDeliveryPath(b *testing.B) {
	for _, bc := range []struct {
		writers string
		members int
	}{{"flusher", 100}, {"flusher", 1000}, {"goroutines", 100}, {"goroutines", 1000}} {
		members := bc.members
		b.Run(fmt.Sprintf("writers=%s/members=%d", bc.writers, members), func(b *testing.B) {
			ctx := context.Background()
			h, _ := hub.New(hub.Options{HistoryOnJoin: -1, AnnounceLimit: -1})
			opts := Options{QueueMessages: 1 << 20, QueueBytes: 1 << 30, RequestRate: -1}
			if bc.writers == "flusher" {
				f := NewFlusher(0)
				defer f.Close()
				opts.Flusher = f
			}
			conns := make([]*discardConn, members)
			var wg sync.WaitGroup
			for i := range conns {
				c := &discardConn{closed: make(chan struct{}), waiting: make(chan []byte, 1)}
				conns[i] = c
				s := New(h, c, opts)
				wg.Go(func() { s.Run(ctx) })
				c.waiting <- []byte(fmt.Sprintf(`{"type":"login","nickname":"m%d","protocol":1}`, i))
			}
			for h.Len() < members {
				time.Sleep(time.Millisecond)
			}
			sender := h.Members()[0]
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := h.Publish(ctx, sender.ID, "", "hello, everyone"); err != nil {
					b.Fatal(err)
				}
			}
			// Wait until every delivery is written, then stop the clock.
			want := int64(b.N) + 2 // and the login reply and the lobby's "joined"
			for _, c := range conns {
				for c.frames.Load() < want {
					time.Sleep(100 * time.Microsecond)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
			for _, c := range conns {
				c.Abort()
			}
			wg.Wait()
		})
	}
}
