package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func (c *client) request(format string, args ...any) { c.send(fmt.Sprintf(format, args...)) }

func (c *client) awaitType(typ string) msg {
	c.t.Helper()
	return c.await(typ, func(x msg) bool { return x.str("type") == typ })
}

func (c *client) awaitError(want string) {
	c.t.Helper()
	if e := c.awaitType("error"); !strings.Contains(e.str("error"), want) {
		c.t.Fatalf("%s: error %q, want %q", c.name, e.str("error"), want)
	}
}

func TestRoomRequestsAndRefusals(t *testing.T) {
	m := startServer(t)
	ann, bob := dialTCP(t, m, "ann"), dialWS(t, m, "bob")
	ann.login("ann")
	if j := ann.awaitType("joined"); j.str("room") != "lobby" {
		t.Fatalf("first room %v, want the lobby", j)
	}
	bob.login("bob")

	for name, want := range map[string]string{`""`: "invalid room name", `"a b"`: "invalid room name",
		`"-x"`: "invalid room name", `"#lobby"`: "already in that room", `5`: `"room" must be a string`} {
		ann.request(`{"type":"join","room":%s}`, name)
		ann.awaitError(want)
	}
	ann.request(`{"type":"join","room":"#Rust"}`)
	joined := ann.awaitType("joined")
	if joined.str("room") != "rust" || len(joined["members"].([]any)) != 1 {
		t.Fatalf("joined %v", joined)
	}
	ann.request(`{"type":"broadcast","room":"nowhere","message":"x"}`)
	ann.awaitError("not in that room")
	bob.request(`{"type":"broadcast","room":"rust","message":"x"}`)
	bob.awaitError("not in that room")
	bob.request(`{"type":"history","room":"rust"}`)
	bob.awaitError("not in that room")

	bob.request(`{"type":"join","room":"rust"}`)
	bob.awaitType("joined")
	if j := ann.awaitType("join"); j.str("room") != "rust" || j.str("message") != "bob joined" {
		t.Fatalf("ann saw %v", j)
	}
	bob.request(`{"type":"broadcast","room":"rust","message":"in rust"}`)
	got := ann.awaitMessage("in rust")
	if got.str("room") != "rust" || got.num("seq") == 0 || got.str("time") == "" {
		t.Fatalf("room message %v", got)
	}

	// Typing reaches the others in the room, not the typist.
	bob.request(`{"type":"typing","room":"rust"}`)
	if ty := ann.awaitType("typing"); ty.str("sender_nickname") != "bob" || ty.str("room") != "rust" {
		t.Fatalf("typing %v", ty)
	}

	// Private messages: to the target and back to the sender only.
	ann.request(`{"type":"private","to":"nobody","message":"hi"}`)
	ann.awaitError("no such member")
	carol := dialTCP(t, m, "carol")
	carol.login("carol")
	ann.request(`{"type":"private","to":"BOB","message":"secret"}`)
	if p := bob.awaitType("private"); p.str("message") != "secret" || p.str("sender_nickname") != "ann" || p.str("to_nickname") != "bob" {
		t.Fatalf("bob got %v", p)
	}
	if p := ann.awaitType("private"); p.str("message") != "secret" {
		t.Fatalf("ann's copy %v", p)
	}
	ann.say("marker")
	for x := carol.next(); x.str("message") != "marker"; x = carol.next() {
		if x.str("type") == "private" {
			t.Fatalf("carol got a private message: %v", x)
		}
	}

	// Members and rooms.
	ann.request(`{"type":"members","room":"rust"}`)
	if ms := ann.awaitType("members"); ms.str("room") != "rust" || len(ms["members"].([]any)) != 2 {
		t.Fatalf("members %v", ms)
	}
	ann.request(`{"type":"rooms"}`)
	rooms := ann.awaitType("rooms")["rooms"].([]any)
	if len(rooms) != 2 || rooms[1].(map[string]any)["room"] != "rust" || rooms[1].(map[string]any)["members"] != 2.0 {
		t.Fatalf("rooms %v", rooms)
	}

	// Nick changes: refused when taken, announced in every shared room.
	bob.request(`{"type":"nick","nickname":"CAROL"}`)
	bob.awaitError("nickname is taken")
	bob.request(`{"type":"nick","nickname":"robert"}`)
	if n := bob.awaitType("nick"); n.str("nickname") != "robert" {
		t.Fatalf("nick reply %v", n)
	}
	renamedIn := map[string]bool{}
	for len(renamedIn) < 2 {
		r := ann.awaitType("rename")
		if r.str("old_nickname") != "bob" || r.str("message") != "bob is now robert" {
			t.Fatalf("rename %v", r)
		}
		renamedIn[r.str("room")] = true
	}
	bob.request(`{"type":"broadcast","room":"rust","message":"new name"}`)
	if x := ann.awaitMessage("new name"); x.str("sender_nickname") != "robert" {
		t.Fatalf("after rename: %v", x)
	}

	// Leaving.
	bob.request(`{"type":"leave","room":"rust"}`)
	if l := bob.awaitType("left"); l.str("room") != "rust" {
		t.Fatalf("left %v", l)
	}
	if l := ann.awaitType("leave"); l.str("room") != "rust" || l.str("message") != "robert left" {
		t.Fatalf("ann saw %v", l)
	}
	bob.request(`{"type":"leave","room":"rust"}`)
	bob.awaitError("not in that room")
}

func TestHistoryOnJoinAndScrollBack(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.HistoryOnJoin = 5
		c.Session.RequestRate = -1
	})
	talker := dialTCP(t, m, "talker")
	talker.login("talker")
	talker.request(`{"type":"join","room":"log"}`)
	talker.awaitType("joined")
	for i := range 12 {
		talker.request(`{"type":"broadcast","room":"log","message":"m%d"}`, i)
	}
	talker.awaitMessage("m11")

	reader := dialWS(t, m, "reader")
	reader.login("reader")
	reader.request(`{"type":"join","room":"log"}`)
	joined := reader.await("joined #log", func(x msg) bool { return x.str("type") == "joined" && x.str("room") == "log" })
	texts := func(list any) (out []string, seqs []int64) {
		for _, x := range list.([]any) {
			o := msg(x.(map[string]any))
			if o["history"] != true {
				t.Fatalf("history entry not marked as history: %v", o)
			}
			out = append(out, o.str("message"))
			seqs = append(seqs, o.num("seq"))
		}
		return out, seqs
	}
	got, seqs := texts(joined["history"])
	if fmt.Sprint(got) != "[m7 m8 m9 m10 m11]" {
		t.Fatalf("history on join %v, want the last 5", got)
	}
	reader.request(`{"type":"history","room":"log","before":%d,"limit":4}`, seqs[0])
	page, _ := texts(reader.awaitType("history")["messages"])
	if fmt.Sprint(page) != "[m3 m4 m5 m6]" {
		t.Fatalf("scroll-back %v", page)
	}
	reader.request(`{"type":"history","room":"log","before":1}`)
	if empty, _ := texts(reader.awaitType("history")["messages"]); len(empty) != 0 {
		t.Fatalf("before the first message: %v", empty)
	}
	// Live messages continue right after the history.
	talker.request(`{"type":"broadcast","room":"log","message":"m12"}`)
	if next := reader.awaitType("message"); next.str("message") != "m12" || next["history"] != nil {
		t.Fatalf("first live message %v", next)
	}
}

func TestHistoryAndLiveHaveNoGapUnderConcurrentSends(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.HistoryOnJoin = 1000
		c.Session.RequestRate = -1
	})
	talker := dialTCP(t, m, "talker")
	talker.loginOriginal("talker") // no echoes to read
	const total = 300
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			talker.say(fmt.Sprint(i))
		}
		talker.say("end")
	})
	var joiners []*client
	for i := range 5 {
		c := dialTCP(t, m, fmt.Sprint("joiner", i))
		c.login(fmt.Sprint("joiner", i)) // joins the lobby while the talker talks
		joiners = append(joiners, c)
	}
	wg.Wait()
	for _, c := range joiners {
		// The login is followed by the lobby's "joined" with its history.
		var got []string
		ended := false
		for _, h := range c.awaitType("joined")["history"].([]any) {
			text := h.(map[string]any)["message"].(string)
			ended = text == "end"
			if !ended {
				got = append(got, text)
			}
		}
		for !ended {
			x := c.next()
			if x.str("type") == "message" {
				ended = x.str("message") == "end"
				if !ended {
					got = append(got, x.str("message"))
				}
			}
		}
		for i := 1; i < len(got); i++ {
			if got[i] != fmt.Sprint(atoi(got[i-1])+1) {
				t.Fatalf("%s: %q follows %q: a gap or a duplicate", c.name, got[i], got[i-1])
			}
		}
		if len(got) == 0 || got[len(got)-1] != fmt.Sprint(total-1) {
			t.Fatalf("%s did not see the room to its end: %v", c.name, got)
		}
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func TestOriginalClientSeesOnlyTheLobbyAsBefore(t *testing.T) {
	m := startServer(t)
	orig := dialTCP(t, m, "orig")
	orig.loginOriginal("orig")
	ext := dialWS(t, m, "ext")
	ext.login("ext")
	other := dialTCP(t, m, "other")
	other.login("other")

	// Everything an extended client can do that is not for the lobby.
	ext.request(`{"type":"join","room":"elsewhere"}`)
	ext.awaitType("joined")
	other.request(`{"type":"join","room":"elsewhere"}`)
	other.awaitType("joined")
	ext.request(`{"type":"broadcast","room":"elsewhere","message":"not for the lobby"}`)
	ext.request(`{"type":"typing","room":"lobby"}`)
	ext.request(`{"type":"private","to":"other","message":"not for orig"}`)
	other.awaitType("private")
	ext.say("for the lobby")
	ext.request(`{"type":"leave","room":"elsewhere"}`)
	ext.awaitType("left")
	other.close()
	ext.await("other's leave", func(x msg) bool { return x.str("type") == "leave" && x.str("room") == "lobby" })
	ext.say("last")

	want := []string{
		fmt.Sprintf("System|用户 ext(%d)加入聊天室", ext.id),
		fmt.Sprintf("System|用户 other(%d)加入聊天室", other.id),
		"ext|for the lobby",
		fmt.Sprintf("System|用户 other(%d)离开聊天室", other.id),
		"ext|last",
	}
	for i, w := range want {
		x := orig.next()
		if len(x) != 3 {
			t.Fatalf("object %d has keys %v: the original client only knows sender_id, sender_nickname, message", i, x)
		}
		if got := x.str("sender_nickname") + "|" + x.str("message"); got != w {
			t.Fatalf("object %d = %q, want %q", i, got, w)
		}
	}
}
