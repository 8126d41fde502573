package main

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * 100 * time.Microsecond) // 0.1 ms .. 100 ms
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond} {
		got := h.quantile(q)
		if got < want*90/100 || got > want*105/100 {
			t.Errorf("q%.2f = %v, want about %v", q, got, want)
		}
	}
	if h.max != 100*time.Millisecond {
		t.Errorf("max %v", h.max)
	}
	for _, us := range []uint64{0, 15, 16, 31, 32, 1000, 123456789} {
		b := bucketOf(us)
		if lo := lowerBound(b); uint64(lo/time.Microsecond) > us || b >= len(h.counts) {
			t.Errorf("bucket %d of %d us starts at %v", b, us, lo)
		}
	}
}
