package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// heapInUse is the server process's live heap after a collection (the
// server runs in this test process), pools emptied.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // pooled buffers (sync.Pool) go on the second
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// fillRoom has sender join room and fill it with n messages of 4096 '"'
// (each escaped to about 8 KB), waiting for the last echo.
func fillRoom(t *testing.T, sender *client, room string, n int) {
	t.Helper()
	sender.request(`{"type":"join","room":%q}`, room)
	sender.awaitType("joined")
	text := strings.Repeat(`\"`, 4096)
	for i := range n {
		sender.request(`{"type":"broadcast","room":%q,"message":"%s%d"}`, room, text[:len(text)-8], i)
		if i%20 == 19 || i == n-1 {
			sender.await("echo", func(m msg) bool { return m.str("room") == room && strings.HasSuffix(m.str("message"), fmt.Sprint(i)) })
		}
	}
}

// TestRepliesToAClientThatNeverReadsStayBounded: joining and leaving a room
// with a full history over and over without reading (issue 15) used to
// queue every "joined" reply uncounted: about 50 MB a connection. Replies
// are now counted, and once more than -queue-bytes of them wait, requests
// for more are refused; the server's heap stays flat.
func TestRepliesToAClientThatNeverReadsStayBounded(t *testing.T) {
	r := newRoom(t, func(c *Config) {
		c.Session.RequestRate = -1
		c.Session.RefusalBurst = 100000 // keep the attacker connected: measure what it holds
	})
	fillRoom(t, r.sender, "big", 60)

	before := heapInUse()
	attacker := dialTCP(t, r.m, "attacker")
	attacker.login("attacker")
	var reqs strings.Builder
	for range 150 {
		reqs.WriteString(`{"type":"join","room":"big"}` + "\n" + `{"type":"leave","room":"big"}` + "\n")
	}
	reqs.WriteString(`{"type":"broadcast","message":"done"}` + "\n")
	attacker.send(reqs.String()) // and never read
	r.witness.awaitMessage("done")
	grew := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %d KiB while the attacker held 300 unread replies", grew>>10)
	if grew > 8<<20 {
		t.Fatalf("heap grew %d MiB for one connection that does not read, want it bounded by the queue (about 2 MiB)", grew>>20)
	}
	r.verify()
}

// TestABigHistoryPageIsCutNotFatal: a history page of big messages stops at
// a byte budget and says there is more (issue 15: the asker used to be
// dropped as a slow consumer for a reply over the queue's bound), and
// asking again continues where it stopped.
func TestABigHistoryPageIsCutNotFatal(t *testing.T) {
	r := newRoom(t, func(c *Config) { c.Session.RequestRate = -1 })
	fillRoom(t, r.sender, "big", 60)

	reader := dialWS(t, r.m, "reader")
	reader.login("reader")
	reader.request(`{"type":"join","room":"big"}`)
	reader.awaitType("joined") // the lobby's
	joined := reader.awaitType("joined")
	hist, _ := joined["history"].([]any)
	if joined["more"] != true || len(hist) == 0 {
		t.Fatalf("joined with %d messages and more=%v, want some and more", len(hist), joined["more"])
	}
	oldest := int64(msg(hist[0].(map[string]any)).num("seq"))
	seen := len(hist)
	for oldest > 0 {
		reader.request(`{"type":"history","room":"big","before":%d,"limit":200}`, oldest)
		page := reader.awaitType("history")
		msgs, _ := page["messages"].([]any)
		if len(msgs) == 0 {
			break
		}
		for i, m := range msgs {
			if got, want := msg(m.(map[string]any)).num("seq"), oldest-int64(len(msgs)-i); got != want {
				t.Fatalf("page: seq %d at %d, want %d", got, i, want)
			}
		}
		oldest = msg(msgs[0].(map[string]any)).num("seq")
		seen += len(msgs)
	}
	t.Logf("read %d messages of history, the first page cut at the byte budget", seen)
	reader.say("still connected")
	r.witness.awaitMessage("still connected")
}

// TestHistoryMemoryIsBounded: a room's history holds at most its memory
// bound (1 MiB), counting the encodings cached on each message in both
// wire shapes, not only its text (issue 15: 512 KiB "of text" held about
// 1.9 MB in a room of quotes).
func TestHistoryMemoryIsBounded(t *testing.T) {
	r := newRoom(t, func(c *Config) { c.Session.RequestRate = -1 })
	original := dialTCP(t, r.m, "original") // so messages are encoded in both shapes
	original.loginOriginal("original")
	before := heapInUse()
	text := strings.Repeat(`\"`, 4092)
	const n = 150
	for i := range n {
		r.sender.request(`{"type":"broadcast","message":"%s%03d"}`, text, i)
		if i%20 == 19 || i == n-1 {
			r.sender.awaitMessage(strings.Repeat(`"`, 4092) + fmt.Sprintf("%03d", i))
		}
	}
	// Every member has written out every message: what stays is history.
	r.witness.awaitMessage(strings.Repeat(`"`, 4092) + fmt.Sprintf("%03d", n-1))
	original.await("the last push", func(m msg) bool { return strings.HasSuffix(m.str("message"), fmt.Sprintf("%03d", n-1)) })
	grew := int64(heapInUse()) - int64(before)
	t.Logf("%d messages of 4 KiB quotes: heap grew %d KiB (bound: 1024 KiB of history)", n, grew>>10)
	if grew > 1280<<10 {
		t.Fatalf("history of one room holds %d KiB, over its 1 MiB bound", grew>>10)
	}
}
