package sqlite

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"chatroom/hub"
)

// BenchmarkWrite measures the journal's group commit: one Write per batch
// of 64-byte messages, as the broker's writer makes them under load.
func BenchmarkWrite(b *testing.B) {
	for _, batch := range []int{1, 10, 100} {
		for _, mode := range []string{"normal", "full"} {
			b.Run(fmt.Sprintf("batch=%d/sync=%s", batch, mode), func(b *testing.B) {
				s, err := Open(b.Context(), Options{Path: filepath.Join(b.TempDir(), "bench.db"), Sync: mode})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				text := strings.Repeat("x", 60)
				seq := uint64(0)
				evs := make([]*hub.Event, batch)
				b.ResetTimer()
				for i := 0; i < b.N; i += batch {
					for j := range evs {
						seq++
						evs[j] = msgEvent("lobby", seq, fmt.Sprintf("%s %d", text, seq))
					}
					if err := s.Write(evs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/message")
			})
		}
	}
}
