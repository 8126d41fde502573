package main

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"chatroom/hub"
	"chatroom/hub/session"
	"chatroom/tcpfront"
	"chatroom/webfront"
)

// startServer runs a hub with both fronts on loopback and returns their
// addresses; everything stops when the test ends.
func startServer(t *testing.T) (tcpAddr, wsURL string) {
	t.Helper()
	h, err := hub.New(hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	unlimited := session.Options{RequestRate: -1}
	tcp := tcpfront.New(h, tcpfront.Options{Session: unlimited})
	web := webfront.New(h, webfront.Options{Session: unlimited})
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpSrv := &http.Server{Handler: web.Routes()}
	go tcp.Serve(tln)
	go httpSrv.Serve(hln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tcp.Shutdown(ctx)
		_ = httpSrv.Shutdown(ctx)
		_ = web.Shutdown(ctx)
	})
	return tln.Addr().String(), "ws://" + hln.Addr().String() + "/ws"
}

// TestRunDeliversEverything runs the tool against a real server over TCP and
// WebSocket, with its epoll readers and its own WebSocket client, and with
// the goroutine readers and the library's client: every message must reach
// every client, in order, and the figures must be filled in.
func TestRunDeliversEverything(t *testing.T) {
	for _, c := range []struct {
		name      string
		goReaders bool
		wsLibrary bool
		original  bool
		idle      bool
		quickAcks bool
	}{
		{name: "epoll"},
		{name: "epoll with quick acks", quickAcks: true},
		{name: "goroutines and library", goReaders: true, wsLibrary: true},
		{name: "original protocol", original: true},
		{name: "idle", idle: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tcpAddr, wsURL := startServer(t) // its own: nicknames are free again
			cfg := config{
				tcpAddrs: []string{tcpAddr}, wsURLs: []string{wsURL}, namePrefix: "bench",
				clients: 20, wsClients: 10, senders: 3,
				rate: 300, inflight: 64, duration: 300 * time.Millisecond, size: 64,
				sources: 1, settle: 50 * time.Millisecond, pollers: 2, pollInterval: time.Millisecond,
				goReaders: c.goReaders, wsLibrary: c.wsLibrary, original: c.original, quickAcks: c.quickAcks,
			}
			if c.original {
				cfg.wsClients = 0 // the original protocol is TCP only
			}
			if c.idle {
				cfg.senders = 0
			}
			res, err := run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if c.idle {
				if res.ProbeWanted != int64(cfg.clients) || res.ProbeReached != res.ProbeWanted {
					t.Fatalf("the probe reached %d of %d clients", res.ProbeReached, res.ProbeWanted)
				}
				return
			}
			if res.Sent == 0 || res.Delivered != res.Expected || res.Lost != 0 || res.OutOfOrder != 0 {
				t.Fatalf("sent %d, delivered %d of %d, lost %d, out of order %d", res.Sent, res.Delivered, res.Expected, res.Lost, res.OutOfOrder)
			}
			if res.P50MS <= 0 || res.MaxMS < res.P50MS {
				t.Fatalf("latencies p50 %v max %v", res.P50MS, res.MaxMS)
			}
		})
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
