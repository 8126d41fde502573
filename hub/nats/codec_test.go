package nats

import (
	"reflect"
	"testing"
	"time"

	"chatroom/hub"
)

// FuzzDecodeEvents: whatever is on the subjects (another version's
// encoding, a stray publisher), decoding never panics, and what it accepts
// encodes back to the same events.
func FuzzDecodeEvents(f *testing.F) {
	ev := &hub.Event{Kind: hub.KindRename, Room: "房间", Seq: 7, Time: time.Unix(0, 12345), From: hub.System,
		Subject: hub.Identity{ID: 1 << 33, Nickname: "bob"}, OldNickname: "b", Reason: "x"}
	good, err := encodeEvents([]*hub.Event{ev, {Kind: hub.KindMessage, Room: "r", Text: "hi\n"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`[{"k":99}]`))
	f.Add([]byte(`{"k":1}`))
	f.Add([]byte(`[{"k":1,"t":"x"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := decodeEvents(data)
		if err != nil {
			return
		}
		again, err := encodeEvents(evs)
		if err != nil {
			t.Fatal(err)
		}
		evs2, err := decodeEvents(again)
		if err != nil {
			t.Fatalf("re-encoded events do not decode: %v", err)
		}
		for i := range evs {
			a, b := toWire(evs[i]), toWire(evs2[i])
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("event %d: %+v then %+v", i, a, b)
			}
		}
	})
}
