package hub

import "context"

// Directory is what a hub on one chatd node of several knows of the
// others' members: a cluster-wide nickname registry and presence. hub/nats
// implements it; without one (Options.Directory nil) the hub is alone and
// none of this is consulted.
//
// The hub calls Claim before a nickname is taken (outside its lock: it
// goes over the network) and Release and Present after a change is made
// (under no lock either). The lookups are called under Hub.mu, so they
// must answer from memory: the lock order is Hub.mu → the directory's own
// lock, and a directory never calls into the hub.
type Directory interface {
	// Claim reserves the nickname whose NicknameKey is key for who, across
	// the cluster: of several nodes racing for one key exactly one wins;
	// the others get ErrNicknameTaken (or another error: the cluster
	// cannot be asked).
	Claim(ctx context.Context, key string, who Identity) error
	// Release gives back a key claimed for who. It may complete later.
	Release(key string, who Identity)
	// Present tells the other nodes which rooms a member of this node is
	// in (rooms nil: it has gone). It may complete later, but the calls
	// for one member take effect in order.
	Present(who Identity, rooms []string)
	// Member finds another node's member by id.
	Member(id int64) (Identity, bool)
	// MemberByKey finds another node's member by NicknameKey.
	MemberByKey(key string) (Identity, bool)
	// RoomMembers lists up to limit of other nodes' members in room.
	RoomMembers(room string, limit int) []Identity
	// RoomCounts counts other nodes' members by room.
	RoomCounts() map[string]int
	// RoomSize counts room's members across the cluster, this node's
	// included, as presence last said: it decides whether joins and
	// leaves are announced there (Options.AnnounceLimit), which must
	// depend on the room's size, not on how many of its members are here.
	RoomSize(room string) int
}

// MaxListed bounds how many members a member list (KindJoined's, or
// RoomMembers') names: a room of a hundred thousand members (a cluster's
// lobby) would cost a list of them all on every join, more than the join
// itself. Rooms that big do not announce joins and leaves either
// (Options.AnnounceLimit); Rooms still counts every member.
const MaxListed = 1000

// NicknameKey is the form under which nicknames are unique: two nicknames
// with one key (case, width, lookalike letters) cannot both be taken. A
// Directory keys its registry by it.
func NicknameKey(nick string) string { return nicknameKey(nick) }
