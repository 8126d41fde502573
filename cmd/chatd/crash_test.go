package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestHistoryStaysCorrectAfterTheByteBoundDrops is issue 13's attack over
// real sockets: big messages make the history's memory bound drop old ones
// while the ring is still growing, short ones follow, and then a member
// joins. It used to take the whole server down (a nil event in history,
// encoded by a shared flusher goroutine). Now the joiner gets the latest
// messages in order, scrolling back continues them with no gap, and
// everyone carries on.
func TestHistoryStaysCorrectAfterTheByteBoundDrops(t *testing.T) {
	r := newRoom(t, func(c *Config) { c.Session.RequestRate = -1 })
	big := strings.Repeat("y", 4000)
	send := func(text string, n int) {
		for i := range n {
			r.sender.say(fmt.Sprintf("%s-%d", text, i))
			if i%20 == 19 || i == n-1 { // read the echoes as we go
				r.sender.awaitMessage(fmt.Sprintf("%s-%d", text, i))
			}
		}
	}
	send(big, 200)
	send("short", 100)
	r.witness.awaitMessage("short-99") // the witness saw the flood; verify looks after it

	for _, joiner := range []*client{dialTCP(t, r.m, "joiner-tcp"), dialWS(t, r.m, "joiner-ws")} {
		joiner.login(joiner.name)
		joined := joiner.await("joined", func(m msg) bool { return m.str("type") == "joined" })
		history, _ := joined["history"].([]any)
		if len(history) != 100 {
			t.Fatalf("%s: joined with %d messages of history, want 100", joiner.name, len(history))
		}
		var first int64
		for i, h := range history {
			m := msg(h.(map[string]any))
			if want := fmt.Sprintf("short-%d", i); m.str("message") != want {
				t.Fatalf("%s: history[%d] = %q, want %q", joiner.name, i, m.str("message"), want)
			}
			if i == 0 {
				first = m.num("seq")
			} else if m.num("seq") != first+int64(i) {
				t.Fatalf("%s: history[%d] has seq %d, want %d", joiner.name, i, m.num("seq"), first+int64(i))
			}
		}

		// Scrolling back continues exactly before the first short message,
		// through the big ones the memory bound kept.
		joiner.send(fmt.Sprintf(`{"type":"history","room":"lobby","before":%d,"limit":200}`, first))
		page := joiner.await("history", func(m msg) bool { return m.str("type") == "history" })
		earlier, _ := page["messages"].([]any)
		if len(earlier) == 0 {
			t.Fatalf("%s: no earlier messages kept", joiner.name)
		}
		for i, h := range earlier {
			m := msg(h.(map[string]any))
			want := fmt.Sprintf("%s-%d", big, 200-len(earlier)+i)
			if m.str("message") != want || m.num("seq") != first-int64(len(earlier)-i) {
				t.Fatalf("%s: earlier[%d] = seq %d %.20q..., want seq %d %.20q...", joiner.name, i,
					m.num("seq"), m.str("message"), first-int64(len(earlier)-i), want)
			}
		}
	}
	r.verify()
}
