package hub_test

import (
	"context"
	"errors"
	"testing"

	"chatroom/hub"
)

// TestLookalikeNamesAreRefused is issue 15's table: names that look like a
// taken one, like System, or like nothing are refused, at login and at
// rename; room names that look like an existing room cannot be created.
func TestLookalikeNamesAreRefused(t *testing.T) {
	ctx := context.Background()
	h := newHub(t)
	for _, nick := range []string{"alice", "josé", "carol", "dave", "bob"} {
		if _, err := h.Login(ctx, nick, &recorder{}); err != nil {
			t.Fatalf("login %q: %v", nick, err)
		}
	}
	for _, c := range []struct {
		nick, why string
		want      error
	}{
		{"jose\u0301", "decomposed josé (NFC vs NFD)", hub.ErrNicknameTaken},
		{"carol\u3164", "carol + Hangul filler", hub.ErrNicknameInvalid},
		{"dave\u2800", "dave + blank Braille", hub.ErrNicknameInvalid},
		{"\u0430lice", "Cyrillic а", hub.ErrNicknameTaken},
		{"ｂｏｂ", "fullwidth", hub.ErrNicknameTaken},
		{"\u0405ystem", "Cyrillic Ѕ in System", hub.ErrNicknameTaken},
		{"\u3164", "only a Hangul filler", hub.ErrNicknameInvalid},
		{"ALICE", "case", hub.ErrNicknameTaken},
		{"a\u200bbob", "zero-width space", hub.ErrNicknameInvalid},
		{"bob\u00a0", "no-break space (NFKC makes it a space, then trimmed)", hub.ErrNicknameTaken},
		{"b\u2003ob", "em space inside: NFKC makes it \"b ob\", a distinct visible name", nil},
		{"\u0301bob", "starts with a combining mark", hub.ErrNicknameInvalid},
		{"al\ufe0fice", "variation selector", hub.ErrNicknameInvalid},
	} {
		_, err := h.Login(ctx, c.nick, &recorder{})
		if !errors.Is(err, c.want) {
			t.Errorf("login %q (%s): %v, want %v", c.nick, c.why, err, c.want)
		}
	}
	// Rename follows the same rules.
	eve, _ := h.Login(ctx, "eve", &recorder{})
	if _, err := h.Rename(ctx, eve.ID, "\u0405ystem"); !errors.Is(err, hub.ErrNicknameTaken) {
		t.Errorf("rename to Cyrillic System: %v", err)
	}
	if _, err := h.Rename(ctx, eve.ID, "\u0430lice"); !errors.Is(err, hub.ErrNicknameTaken) {
		t.Errorf("rename to Cyrillic alice: %v", err)
	}
	if self, err := h.Rename(ctx, eve.ID, "ｅｖｅ２"); err != nil || self.Nickname != "eve2" {
		t.Errorf("rename to fullwidth eve2: %v %q, want normalised to eve2", err, self.Nickname)
	}

	// Rooms: fullwidth is the same room; a Cyrillic look-alike is refused.
	if name, err := h.JoinRoom(ctx, eve.ID, "#ｇo"); err != nil || name != "go" {
		t.Fatalf("join #ｇo: %q %v, want go", name, err)
	}
	if _, err := h.JoinRoom(ctx, eve.ID, "ｌobby"); !errors.Is(err, hub.ErrAlreadyInRoom) {
		t.Errorf("join ｌobby: %v, want already in (it is the lobby)", err)
	}
	for _, name := range []string{"l\u043ebby", "g\u043e", "1obby"} {
		if _, err := h.JoinRoom(ctx, eve.ID, name); !errors.Is(err, hub.ErrRoomInvalid) {
			t.Errorf("create %q beside an existing look-alike: %v, want ErrRoomInvalid", name, err)
		}
	}
}
