package webfront

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestFramesWeWriteAreWhatTheLibraryReads writes messages of every header
// length class through a frameConn and reads them with the library's client:
// in one blocking write, and in one that does not wait (where a 16 MB message
// cannot fit the socket at once: the rest is written by the next blocking
// write).
func TestFramesWeWriteAreWhatTheLibraryReads(t *testing.T) {
	for _, try := range []bool{false, true} {
		name := "blocking"
		if try {
			name = "try"
		}
		t.Run(name, func(t *testing.T) { testFramesRoundTrip(t, try) })
	}
}

func testFramesRoundTrip(t *testing.T, try bool) {
	sizes := []int{0, 1, 125, 126, 65535, 65536, 200000}
	if try {
		sizes = append(sizes, 16<<20, 3)
	}
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hw := &hijackingResponseWriter{ResponseWriter: w}
		ws, err := websocket.Accept(hw, r, nil)
		if err != nil {
			done <- err
			return
		}
		defer ws.CloseNow()
		var payloads [][]byte
		for _, n := range sizes {
			payloads = append(payloads, bytes.Repeat([]byte{'a' + byte(n%26)}, n))
		}
		deadline := time.Now().Add(10 * time.Second)
		if try {
			if !hw.conn.w.CanTry() {
				done <- errors.New("no raw connection to try writes on")
				return
			}
			all, err := hw.conn.tryWriteTextMessages(payloads)
			if err == nil && !all {
				err = hw.conn.writeTextMessages(nil, deadline) // the rest, first
			} else if err == nil {
				err = errors.New("16 MB went out in one non-blocking write; the test wants the rest path")
			}
			done <- err
		} else {
			done <- hw.conn.writeTextMessages(payloads, deadline)
		}
		// Keep reading so the close handshake can finish.
		ws.Read(context.Background())
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(32 << 20)
	for _, n := range sizes {
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("message of %d bytes: %v", n, err)
		}
		if typ != websocket.MessageText || len(data) != n || (n > 0 && data[0] != 'a'+byte(n%26)) {
			t.Fatalf("message of %d bytes arrived as %v with %d bytes", n, typ, len(data))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

var _ net.Conn = (*frameConn)(nil)
