package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"chatroom/hub"
)

// recorder is an in-memory subscriber that keeps everything delivered.
type recorder struct {
	mu     sync.Mutex
	events []*hub.Event
}

func (r *recorder) Busy() bool { return false }

func (r *recorder) Deliver(ev *hub.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []*hub.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*hub.Event(nil), r.events...)
}

func newHub(t *testing.T) *hub.Hub {
	t.Helper()
	h, err := hub.New(hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestJoinWelcomesFirstAndAnnounces(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	alice, bob := &recorder{}, &recorder{}
	a, err := h.Login(ctx, "  alice ", alice)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != 1 || a.Nickname != "alice" {
		t.Fatalf("alice = %+v, want id 1 and trimmed nickname", a)
	}
	b, err := h.Login(ctx, "bob", bob)
	if err != nil {
		t.Fatal(err)
	}
	got := bob.snapshot()
	if len(got) < 2 || got[0].Kind != hub.KindWelcome || got[0].Subject != b {
		t.Fatalf("bob's first event = %+v, want his welcome", got)
	}
	if got[1].Kind != hub.KindJoined || got[1].Room != hub.Lobby || len(got[1].Members) != 2 {
		t.Fatalf("bob's second event = %+v, want the lobby with 2 members", got[1])
	}
	var joins []string
	for _, ev := range alice.snapshot() {
		if ev.Kind == hub.KindJoin {
			joins = append(joins, ev.Subject.Nickname)
		}
	}
	if fmt.Sprint(joins) != "[alice bob]" {
		t.Fatalf("alice saw joins %v, want [alice bob] (the subscriber filters its own)", joins)
	}
}

func TestNicknameRules(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	if _, err := h.Login(ctx, "Alice", &recorder{}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]error{
		"":                      hub.ErrNicknameInvalid,
		"   ":                   hub.ErrNicknameInvalid,
		strings.Repeat("x", 33): hub.ErrNicknameInvalid,
		"bad\x07bell":           hub.ErrNicknameInvalid,
		"rtl\u202eoverride":     hub.ErrNicknameInvalid,
		"ALICE":                 hub.ErrNicknameTaken,
		"alice":                 hub.ErrNicknameTaken,
		"system":                hub.ErrNicknameTaken,
		strings.Repeat("字", 32): nil,
		"bob smith":             nil,
	}
	for nick, want := range cases {
		_, err := h.Login(ctx, nick, &recorder{})
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("Join(%q) = %v, want %v", nick, err, want)
		}
	}
}

func TestIDsAreNeverReused(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	seen := map[int64]bool{}
	for i := range 50 {
		id, err := h.Login(ctx, "same", &recorder{})
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		if seen[id.ID] || id.ID <= 0 {
			t.Fatalf("id %d reused or not positive", id.ID)
		}
		seen[id.ID] = true
		h.Logout(ctx, id.ID, "left")
	}
}

func TestEveryMemberSeesOneOrder(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	const members, perSender = 8, 200
	recs := make([]*recorder, members)
	ids := make([]int64, members)
	for i := range recs {
		recs[i] = &recorder{}
		id, err := h.Login(ctx, fmt.Sprintf("m%d", i), recs[i])
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id.ID
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for n := range perSender {
				if err := h.Publish(ctx, id, "", fmt.Sprintf("%d-%d", id, n)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Compare the message sequence of the first member with every other.
	seqOf := func(r *recorder) []uint64 {
		var out []uint64
		for _, ev := range r.snapshot() {
			if ev.Kind == hub.KindMessage {
				out = append(out, ev.Seq)
			}
		}
		return out
	}
	want := seqOf(recs[0])
	if len(want) != members*perSender {
		t.Fatalf("member 0 got %d messages, want %d", len(want), members*perSender)
	}
	for i := 1; i < len(want); i++ {
		if want[i] <= want[i-1] {
			t.Fatalf("sequence not increasing at %d: %d after %d", i, want[i], want[i-1])
		}
	}
	for i, r := range recs[1:] {
		if got := seqOf(r); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("member %d saw a different order", i+1)
		}
	}
}

func TestPublishRefusals(t *testing.T) {
	ctx := context.Background()
	h, err := hub.New(hub.Options{MaxMessageBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := h.Login(ctx, "a", &recorder{})
	for _, text := range []string{"", "  \n", "01234567890", "esc\x1b[2J", "\xff"} {
		if err := h.Publish(ctx, a.ID, "", text); !errors.Is(err, hub.ErrMessageInvalid) {
			t.Errorf("Publish(%q) = %v, want ErrMessageInvalid", text, err)
		}
	}
	if err := h.Publish(ctx, a.ID, "", "ok\tline\n2"); err != nil {
		t.Errorf("tab and newline refused: %v", err)
	}
	if err := h.Publish(ctx, 999, "", "hi"); !errors.Is(err, hub.ErrNotMember) {
		t.Errorf("Publish from a stranger = %v, want ErrNotMember", err)
	}
}

func TestLeaveAnnouncedAndShutdown(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	watcher := &recorder{}
	h.Login(ctx, "watcher", watcher)
	gone, _ := h.Login(ctx, "gone", &recorder{})
	h.Logout(ctx, gone.ID, "slow consumer")
	h.Logout(ctx, gone.ID, "again") // no-op
	var leaves []*hub.Event
	for _, ev := range watcher.snapshot() {
		if ev.Kind == hub.KindLeave {
			leaves = append(leaves, ev)
		}
	}
	if len(leaves) != 1 || leaves[0].Subject != gone || leaves[0].Reason != "slow consumer" {
		t.Fatalf("leaves = %+v, want one for %v with its reason", leaves, gone)
	}
	if h.Len() != 1 {
		t.Fatalf("Len = %d, want 1", h.Len())
	}
	if err := h.Shutdown(ctx, "bye"); err != nil {
		t.Fatal(err)
	}
	evs := watcher.snapshot()
	if last := evs[len(evs)-1]; last.Kind != hub.KindNotice || last.Text != "bye" {
		t.Fatalf("last event %+v, want the shutdown notice", last)
	}
	if _, err := h.Login(ctx, "late", &recorder{}); !errors.Is(err, hub.ErrShuttingDown) {
		t.Fatalf("join during shutdown = %v", err)
	}
}

func TestRoomsPrivateMessagesAndRenames(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	alice, bob, carol := &recorder{}, &recorder{}, &recorder{}
	a, _ := h.Login(ctx, "alice", alice)
	b, _ := h.Login(ctx, "bob", bob)
	c, _ := h.Login(ctx, "carol", carol)

	for name, want := range map[string]error{"": hub.ErrRoomInvalid, "#": hub.ErrRoomInvalid, "a b": hub.ErrRoomInvalid,
		"-x": hub.ErrRoomInvalid, strings.Repeat("r", 33): hub.ErrRoomInvalid, "#Lobby": hub.ErrAlreadyInRoom} {
		if _, err := h.JoinRoom(ctx, a.ID, name); !errors.Is(err, want) {
			t.Errorf("JoinRoom(%q) = %v, want %v", name, err, want)
		}
	}
	if name, err := h.JoinRoom(ctx, a.ID, "#Go-Dev"); err != nil || name != "go-dev" {
		t.Fatalf("JoinRoom = %q, %v", name, err)
	}
	h.JoinRoom(ctx, b.ID, "go-dev")
	if err := h.Publish(ctx, c.ID, "go-dev", "not in it"); !errors.Is(err, hub.ErrNotInRoom) {
		t.Fatalf("publish outside the room: %v", err)
	}
	h.Publish(ctx, a.ID, "go-dev", "hello gophers")
	if err := h.Private(ctx, a.ID, "BOB", "psst"); err != nil {
		t.Fatal(err)
	}
	if err := h.Private(ctx, a.ID, "nobody", "psst"); !errors.Is(err, hub.ErrNoSuchMember) {
		t.Fatalf("private to nobody: %v", err)
	}
	if _, err := h.Rename(ctx, b.ID, "Carol"); !errors.Is(err, hub.ErrNicknameTaken) {
		t.Fatalf("rename to a taken name: %v", err)
	}
	if _, err := h.Rename(ctx, b.ID, "robert"); err != nil {
		t.Fatal(err)
	}
	texts := func(r *recorder, kind hub.Kind) []string {
		var out []string
		for _, ev := range r.snapshot() {
			if ev.Kind == kind {
				out = append(out, ev.Room+":"+ev.Text+ev.OldNickname)
			}
		}
		return out
	}
	if got := texts(carol, hub.KindMessage); len(got) != 0 {
		t.Errorf("carol saw room messages %v", got)
	}
	if got := texts(carol, hub.KindPrivate); len(got) != 0 {
		t.Errorf("carol saw private messages %v", got)
	}
	if got := fmt.Sprint(texts(bob, hub.KindPrivate)); got != "[:psst]" {
		t.Errorf("bob's private messages %v", got)
	}
	if got := fmt.Sprint(texts(alice, hub.KindPrivate)); got != "[:psst]" {
		t.Errorf("alice's copy of her private message: %v", got)
	}
	if got := fmt.Sprint(texts(alice, hub.KindRename)); got != "[lobby:bob go-dev:bob]" {
		t.Errorf("alice saw renames %v, want one per shared room", got)
	}
	if got := fmt.Sprint(texts(carol, hub.KindRename)); got != "[lobby:bob]" {
		t.Errorf("carol saw renames %v", got)
	}
	if _, err := h.LeaveRoom(ctx, b.ID, "go-dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LeaveRoom(ctx, b.ID, "go-dev"); !errors.Is(err, hub.ErrNotInRoom) {
		t.Fatalf("second leave: %v", err)
	}
	rooms := h.Rooms(a.ID)
	if len(rooms) != 2 || rooms[0] != (hub.RoomInfo{Name: "go-dev", Members: 1, Joined: true}) {
		t.Fatalf("rooms %+v", rooms)
	}
}

// TestHistoryHasNoGapOrDuplicate joins members while messages are being
// published: for each joiner, the history it got plus the live messages after
// it must be exactly the room's sequence from some point on, with no hole.
func TestHistoryHasNoGapOrDuplicate(t *testing.T) {
	ctx := context.Background()
	h, err := hub.New(hub.Options{HistoryOnJoin: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sender, _ := h.Login(ctx, "sender", &recorder{})
	h.JoinRoom(ctx, sender.ID, "busy")
	const total = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			h.Publish(ctx, sender.ID, "busy", fmt.Sprint(i))
		}
	}()
	var joiners []*recorder
	for i := range 20 {
		r := &recorder{}
		id, _ := h.Login(ctx, fmt.Sprint("joiner", i), r)
		h.JoinRoom(ctx, id.ID, "busy")
		joiners = append(joiners, r)
	}
	<-done
	// The sender's messages are "0", "1", ...: each joiner's history followed
	// by its live messages must be a run of consecutive numbers to the end.
	for i, r := range joiners {
		var got []int
		for _, ev := range r.snapshot() {
			switch {
			case ev.Kind == hub.KindJoined && ev.Room == "busy":
				for _, old := range ev.History {
					got = append(got, atoi(old.Text))
				}
			case ev.Kind == hub.KindMessage && ev.Room == "busy":
				got = append(got, atoi(ev.Text))
			}
		}
		for j := 1; j < len(got); j++ {
			if got[j] != got[j-1]+1 {
				t.Fatalf("joiner %d: history and live messages jump from %d to %d", i, got[j-1], got[j])
			}
		}
		if len(got) == 0 || got[len(got)-1] != total-1 {
			t.Fatalf("joiner %d did not see the room up to its end", i)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestConcurrentOperationsDoNotRace runs every hub operation from several
// goroutines at once over colliding nicknames and rooms (issue 12: Private
// read identities after releasing the lock while Rename wrote them). The
// race detector is the assertion; the checks after it are the invariants
// that need no model: every recipient saw each room's events in one
// strictly increasing order, and nobody is left behind.
func TestConcurrentOperationsDoNotRace(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	names := []string{"ann", "Ann", "bob", "BOB", "cy"}
	rooms := []string{"go", "#Go", "rust", "lobby"}
	var wg sync.WaitGroup
	subs := make([]*recorder, 6)
	for w := range subs {
		subs[w] = &recorder{}
		wg.Go(func() {
			self, err := h.Login(ctx, fmt.Sprintf("w%d", w), subs[w])
			if err != nil {
				t.Error(err)
				return
			}
			for i := range 400 {
				name, room := names[(w+i)%len(names)], rooms[(w*7+i)%len(rooms)]
				switch i % 8 {
				case 0:
					_, _ = h.Rename(ctx, self.ID, name)
				case 1:
					_ = h.Private(ctx, self.ID, name, "psst")
				case 2:
					_, _ = h.JoinRoom(ctx, self.ID, room)
				case 3:
					_ = h.Publish(ctx, self.ID, room, "hi")
				case 4:
					_, _ = h.LeaveRoom(ctx, self.ID, room)
				case 5:
					_, _, _ = h.RoomMembers(self.ID, room)
					_ = h.Rooms(self.ID)
				case 6:
					_ = h.Typing(ctx, self.ID, room)
					_, _, _ = h.RoomHistory(self.ID, room, 0, 10)
				case 7:
					_ = h.Members()
				}
			}
			h.Logout(ctx, self.ID, "left")
		})
	}
	wg.Wait()
	if h.Len() != 0 {
		t.Fatalf("%d members left behind", h.Len())
	}
	for i, sub := range subs {
		last := map[string]uint64{}
		for _, ev := range sub.snapshot() {
			if ev.Seq == 0 {
				continue
			}
			if ev.Seq <= last[ev.Room] {
				t.Fatalf("subscriber %d: %s seq %d after %d", i, ev.Room, ev.Seq, last[ev.Room])
			}
			last[ev.Room] = ev.Seq
		}
	}
}

// TestPrivateWhileRenaming is issue 12's race, focused: private messages to
// a member who keeps renaming. Each private message carries a nickname the
// recipient really had, whole.
func TestPrivateWhileRenaming(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	target, senders := &recorder{}, []*recorder{{}, {}}
	self, _ := h.Login(ctx, "r0", target)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 3000 {
			_, _ = h.Rename(ctx, self.ID, fmt.Sprintf("r%d", (i+1)%2))
		}
	})
	for i, rec := range senders {
		from, _ := h.Login(ctx, fmt.Sprintf("sender%d", i), rec)
		wg.Go(func() {
			for j := range 3000 {
				_ = h.Private(ctx, from.ID, fmt.Sprintf("r%d", j%2), "psst")
			}
		})
	}
	wg.Wait()
	for _, ev := range target.snapshot() {
		if ev.Kind == hub.KindPrivate && ev.To.Nickname != "r0" && ev.To.Nickname != "r1" {
			t.Fatalf("private message to %q", ev.To.Nickname)
		}
	}
}

// TestEmptyRoomsMakeWayAndCreationIsQuotaed: rooms nobody is in never stop
// a room being created (the one empty longest is removed, and forgotten),
// and one address may have created only so many rooms that exist (issue
// 15: one address used to take all 500 rooms for good).
func TestEmptyRoomsMakeWayAndCreationIsQuotaed(t *testing.T) {
	ctx := context.Background()
	h, err := hub.New(hub.Options{MaxRooms: 3, MaxRoomsPerPeer: 2})
	if err != nil {
		t.Fatal(err)
	}
	aRec, bRec := &recorder{}, &recorder{}
	a, _ := h.LoginFrom(ctx, "192.0.2.1", "a", aRec, hub.Position{})
	b, _ := h.LoginFrom(ctx, "192.0.2.2", "b", bRec, hub.Position{})
	join := func(who hub.Identity, room string) error { _, err := h.JoinRoom(ctx, who.ID, room); return err }

	if err := join(a, "r1"); err != nil {
		t.Fatal(err)
	}
	_ = h.Publish(ctx, a.ID, "r1", "kept while r1 exists")
	if err := join(a, "r2"); err != nil {
		t.Fatal(err)
	}
	if err := join(b, "r2"); err != nil {
		t.Fatal(err)
	}
	// The server is full (lobby, r1, r2) and every room has members.
	if err := join(b, "r3"); !errors.Is(err, hub.ErrTooManyRooms) {
		t.Fatalf("creating a room while all are in use: %v, want ErrTooManyRooms", err)
	}
	// An empty room stays, with its history, while nobody needs its place.
	if _, err := h.LeaveRoom(ctx, a.ID, "r1"); err != nil {
		t.Fatal(err)
	}
	if got := roomNames(h.Rooms(a.ID)); got != "lobby r1 r2" {
		t.Fatalf("rooms %s, want the empty r1 kept", got)
	}
	if err := join(b, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, hist, _ := h.RoomHistory(b.ID, "r1", 0, 10); len(hist) != 1 {
		t.Fatalf("r1 rejoined while kept: %d messages of history, want 1", len(hist))
	}
	_, _ = h.LeaveRoom(ctx, b.ID, "r1")
	// Now r1 makes way for r3.
	if err := join(b, "r3"); err != nil {
		t.Fatalf("creating r3 with r1 empty: %v", err)
	}
	if got := roomNames(h.Rooms(a.ID)); got != "lobby r2 r3" {
		t.Fatalf("rooms %s, want r1 removed for r3", got)
	}
	// a's quota (2) counts r2 only now; b leaves r3 so that a may create
	// r1 again: a new room, from seq 1, with no history.
	_, _ = h.LeaveRoom(ctx, b.ID, "r3")
	if err := join(a, "r1"); err != nil {
		t.Fatalf("a recreating r1: %v", err)
	}
	_ = h.Publish(ctx, a.ID, "r1", "new r1")
	evs := aRec.snapshot()
	last, joined := evs[len(evs)-1], lastOfKind(evs, hub.KindJoined)
	if len(joined.History) != 0 || last.Text != "new r1" || last.Seq != 2 {
		t.Fatalf("recreated r1: %d messages of history, first message seq %d, want none and 2 (after a's own join)", len(joined.History), last.Seq)
	}
	// a has created r1 and r2, which both exist: its quota is used up,
	// even once r2 is empty and could make way.
	_, _ = h.LeaveRoom(ctx, a.ID, "r2")
	_, _ = h.LeaveRoom(ctx, b.ID, "r2")
	if err := join(a, "r4"); !errors.Is(err, hub.ErrTooManyRooms) || !strings.Contains(err.Error(), "you have created 2") {
		t.Fatalf("a creating a third room: %v, want ErrTooManyRooms (quota)", err)
	}
	if err := join(b, "r4"); err != nil {
		t.Fatalf("b creating r4 (r2 empty): %v", err)
	}
	if got := roomNames(h.Rooms(a.ID)); got != "lobby r1 r4" {
		t.Fatalf("rooms %s", got)
	}
}

func roomNames(rooms []hub.RoomInfo) string {
	var names []string
	for _, r := range rooms {
		names = append(names, r.Name)
	}
	return strings.Join(names, " ")
}

func lastOfKind(evs []*hub.Event, k hub.Kind) *hub.Event {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Kind == k {
			return evs[i]
		}
	}
	return nil
}
