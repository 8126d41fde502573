package hub_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"chatroom/hub"
)

// fakeDirectory is a cluster's Directory as a plain model: nicknames held
// by key, presence by member, and another node's members given by the
// test.
type fakeDirectory struct {
	mu       sync.Mutex
	claimed  map[string]int64
	present  map[int64][]string
	others   map[int64]hub.Identity
	rooms    map[int64][]string // others' rooms
	released []string
}

func newFakeDirectory() *fakeDirectory {
	return &fakeDirectory{claimed: map[string]int64{}, present: map[int64][]string{},
		others: map[int64]hub.Identity{}, rooms: map[int64][]string{}}
}

func (d *fakeDirectory) Claim(_ context.Context, key string, who hub.Identity) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, taken := d.claimed[key]; taken {
		return hub.ErrNicknameTaken
	}
	d.claimed[key] = who.ID
	return nil
}

func (d *fakeDirectory) Release(key string, who hub.Identity) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.claimed[key] == who.ID {
		delete(d.claimed, key)
		d.released = append(d.released, key)
	}
}

func (d *fakeDirectory) Present(who hub.Identity, rooms []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rooms == nil {
		delete(d.present, who.ID)
		return
	}
	d.present[who.ID] = rooms
}

func (d *fakeDirectory) Member(id int64) (hub.Identity, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	who, ok := d.others[id]
	return who, ok
}

func (d *fakeDirectory) MemberByKey(key string) (hub.Identity, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, who := range d.others {
		if hub.NicknameKey(who.Nickname) == key {
			return who, true
		}
	}
	return hub.Identity{}, false
}

func (d *fakeDirectory) RoomMembers(room string, limit int) []hub.Identity {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []hub.Identity
	for id, rooms := range d.rooms {
		if slices.Contains(rooms, room) && len(out) < limit {
			out = append(out, d.others[id])
		}
	}
	return out
}

func (d *fakeDirectory) RoomSize(room string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, rooms := range d.rooms {
		if slices.Contains(rooms, room) {
			n++
		}
	}
	for _, rooms := range d.present {
		if slices.Contains(rooms, room) {
			n++
		}
	}
	return n
}

func (d *fakeDirectory) RoomCounts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for _, rooms := range d.rooms {
		for _, r := range rooms {
			out[r]++
		}
	}
	return out
}

// TestHubAsOneNodeOfACluster: with a Directory, nicknames are claimed
// through it (and given back on rename and logout), presence follows every
// membership change, another node's members are in lists and room counts
// and can be sent private messages, ids start after FirstID, and leaves
// are announced even during shutdown (the other nodes' members stay).
func TestHubAsOneNodeOfACluster(t *testing.T) {
	dir := newFakeDirectory()
	h, err := hub.New(hub.Options{Directory: dir, FirstID: 5 << 32})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir.others[9<<32+1] = hub.Identity{ID: 9<<32 + 1, Nickname: "remote"}
	dir.rooms[9<<32+1] = []string{"lobby", "far"}
	dir.claimed[hub.NicknameKey("remote")] = 9<<32 + 1

	if _, err := h.Login(ctx, "REMOTE", &recorder{}); !errors.Is(err, hub.ErrNicknameTaken) {
		t.Fatalf("login as another node's nickname: %v", err)
	}
	var ann recorder
	me, err := h.Login(ctx, "ann", &ann)
	if err != nil {
		t.Fatal(err)
	}
	if me.ID != 5<<32+2 { // the refused login took an id too: ids are never reused
		t.Fatalf("id %d, want %d", me.ID, 5<<32+2)
	}
	if got := dir.present[me.ID]; !slices.Equal(got, []string{"lobby"}) {
		t.Fatalf("presence after login: %v", got)
	}
	if _, ms, _ := h.RoomMembers(me.ID, "lobby"); len(ms) != 2 {
		t.Fatalf("lobby members %v, want ann and remote", ms)
	}
	if _, err := h.JoinRoom(ctx, me.ID, "near"); err != nil {
		t.Fatal(err)
	}
	if got := dir.present[me.ID]; !slices.Equal(got, []string{"lobby", "near"}) {
		t.Fatalf("presence after join: %v", got)
	}
	rooms := h.Rooms(me.ID)
	if roomNames(rooms) != "far lobby near" || rooms[0].Members != 1 || rooms[1].Members != 2 {
		t.Fatalf("rooms %+v", rooms)
	}
	// Private messages to another node's member go out through the broker.
	if err := h.Private(ctx, me.ID, "Remote", "hi"); err != nil {
		t.Fatal(err)
	}
	if err := h.PrivateTo(ctx, me.ID, 9<<32+1, "hi again"); err != nil {
		t.Fatal(err)
	}
	if p := lastOfKind(ann.snapshot(), hub.KindPrivate); p == nil || p.To.ID != 9<<32+1 || p.Text != "hi again" {
		t.Fatalf("sender's copy of the private message: %+v", p)
	}
	// A rename claims the new key and gives back the old one.
	if _, err := h.Rename(ctx, me.ID, "remote"); !errors.Is(err, hub.ErrNicknameTaken) {
		t.Fatalf("rename to another node's nickname: %v", err)
	}
	if _, err := h.Rename(ctx, me.ID, "anna"); err != nil {
		t.Fatal(err)
	}
	if dir.claimed[hub.NicknameKey("anna")] != me.ID || dir.claimed[hub.NicknameKey("ann")] != 0 {
		t.Fatalf("claims after the rename: %v", dir.claimed)
	}
	// Shutdown: leaves are still announced, and everything is given back.
	var bob recorder
	bobID, err := h.Login(ctx, "bob", &bob)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(ctx, "bye"); err != nil {
		t.Fatal(err)
	}
	h.Logout(ctx, me.ID, "server shutting down")
	if l := lastOfKind(bob.snapshot(), hub.KindLeave); l == nil || l.Subject.ID != me.ID {
		t.Fatalf("bob was not told ann left during shutdown: %+v", l)
	}
	h.Logout(ctx, bobID.ID, "server shutting down")
	if len(dir.present) != 0 || len(dir.claimed) != 1 { // remote's only
		t.Fatalf("after logout: presence %v, claims %v", dir.present, dir.claimed)
	}
}

// TestMemberListsAreBounded: a list names at most MaxListed members,
// those of this node first; the count in Rooms is exact.
func TestMemberListsAreBounded(t *testing.T) {
	dir := newFakeDirectory()
	for i := range 600 {
		id := int64(9<<32 + i)
		dir.others[id] = hub.Identity{ID: id, Nickname: "r" + itoa(i)}
		dir.rooms[id] = []string{"lobby"}
	}
	h, err := hub.New(hub.Options{Directory: dir, AnnounceLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	var last hub.Identity
	var rec recorder
	for i := range 600 {
		if last, err = h.Login(context.Background(), "l"+itoa(i), &rec); err != nil {
			t.Fatal(err)
		}
	}
	_, ms, err := h.RoomMembers(last.ID, "lobby")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != hub.MaxListed || ms[0].Nickname != "l000" || ms[599].Nickname != "l599" {
		t.Fatalf("%d listed (first %v), want %d with this node's 600 first", len(ms), ms[0], hub.MaxListed)
	}
	if j := lastOfKind(rec.snapshot(), hub.KindJoined); len(j.Members) != hub.MaxListed {
		t.Fatalf("joined lists %d members, want %d", len(j.Members), hub.MaxListed)
	}
	if r := h.Rooms(last.ID); r[0].Members != 1200 {
		t.Fatalf("rooms %+v, want 1200 in the lobby", r)
	}
}

func itoa(i int) string {
	return string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}
