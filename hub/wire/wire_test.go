package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"chatroom/hub"
)

func TestOriginalPushesFitOneRecv(t *testing.T) {
	from := hub.Identity{ID: 7, Nickname: strings.Repeat("\"名", 16)}
	texts := []string{
		"",
		"hi",
		strings.Repeat("字", 2000),
		strings.Repeat("a\"\\\n", 900),
		strings.Repeat("😀", 700),
		strings.Repeat("x", MaxOriginalFrame*3),
	}
	for _, text := range texts {
		frames := OriginalPushes(from, text)
		var rebuilt strings.Builder
		for i, f := range frames {
			if len(f) > MaxOriginalFrame {
				t.Fatalf("frame %d is %d bytes, over %d", i, len(f), MaxOriginalFrame)
			}
			if !utf8.Valid(f) || f[len(f)-1] != '\n' || strings.Count(string(f), "\n") != 1 {
				t.Fatalf("frame %d is not one UTF-8 line: %q", i, f)
			}
			var push struct {
				SenderID       int64  `json:"sender_id"`
				SenderNickname string `json:"sender_nickname"`
				Message        string `json:"message"`
			}
			if err := json.Unmarshal(f, &push); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if push.SenderID != from.ID || push.SenderNickname != from.Nickname {
				t.Fatalf("frame %d sender = %d %q", i, push.SenderID, push.SenderNickname)
			}
			rebuilt.WriteString(push.Message)
		}
		if rebuilt.String() != text {
			t.Fatalf("split text does not join back to the original (%d frames)", len(frames))
		}
	}
}

func TestExtendedEventShape(t *testing.T) {
	ev := &hub.Event{Kind: hub.KindLeave, Seq: 9, Time: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC),
		From: hub.System, Subject: hub.Identity{ID: 3, Nickname: "bob"}, Reason: "slow consumer"}
	frames := EncodeEvent(ev, true)
	if len(frames) != 1 {
		t.Fatalf("%d frames", len(frames))
	}
	var got map[string]any
	if err := json.Unmarshal(frames[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "leave", "seq": 9.0, "time": "2026-01-02T03:04:05.006Z", "sender_id": 0.0,
		"sender_nickname": "System", "message": "bob left (slow consumer)", "reason": "slow consumer",
		"member": map[string]any{"id": 3.0, "nickname": "bob"}}
	for k, v := range want {
		if gb, _ := json.Marshal(got[k]); string(gb) != mustJSON(v) {
			t.Errorf("%s = %s, want %s", k, gb, mustJSON(v))
		}
	}
	if again := EncodeEvent(ev, true); &again[0][0] != &frames[0][0] {
		t.Error("second encoding was not served from the cache")
	}
	orig := EncodeEvent(ev, false)
	if !strings.Contains(string(orig[0]), "用户 bob(3)离开聊天室") {
		t.Errorf("original leave notice = %s", orig[0])
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
