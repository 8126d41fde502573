package nats

import (
	"encoding/json"
	"fmt"
	"time"

	"chatroom/hub"
)

// wireEvent is an event as nodes pass it to each other: what any node
// needs to deliver it, store it and replay it. Members and History (a
// KindJoined's) never travel: a joiner gets them from its own node.
type wireEvent struct {
	Kind        hub.Kind `json:"k"`
	Room        string   `json:"r,omitempty"`
	Seq         uint64   `json:"s,omitempty"`
	Time        int64    `json:"t"` // Unix nanoseconds
	FromID      int64    `json:"fi,omitempty"`
	FromNick    string   `json:"fn,omitempty"`
	SubjectID   int64    `json:"si,omitempty"`
	SubjectNick string   `json:"sn,omitempty"`
	ToID        int64    `json:"ti,omitempty"`
	ToNick      string   `json:"tn,omitempty"`
	OldNickname string   `json:"o,omitempty"`
	Text        string   `json:"x,omitempty"`
	Reason      string   `json:"y,omitempty"`
}

func toWire(ev *hub.Event) wireEvent {
	return wireEvent{Kind: ev.Kind, Room: ev.Room, Seq: ev.Seq, Time: ev.Time.UnixNano(),
		FromID: ev.From.ID, FromNick: ev.From.Nickname, SubjectID: ev.Subject.ID, SubjectNick: ev.Subject.Nickname,
		ToID: ev.To.ID, ToNick: ev.To.Nickname, OldNickname: ev.OldNickname, Text: ev.Text, Reason: ev.Reason}
}

func (w *wireEvent) event() *hub.Event {
	return &hub.Event{Kind: w.Kind, Room: w.Room, Seq: w.Seq, Time: time.Unix(0, w.Time),
		From: hub.Identity{ID: w.FromID, Nickname: w.FromNick}, Subject: hub.Identity{ID: w.SubjectID, Nickname: w.SubjectNick},
		To: hub.Identity{ID: w.ToID, Nickname: w.ToNick}, OldNickname: w.OldNickname, Text: w.Text, Reason: w.Reason}
}

// encodeEvents encodes a batch of events (one room's, or a single direct
// event) as a JSON array.
func encodeEvents(events []*hub.Event) ([]byte, error) {
	ws := make([]wireEvent, len(events))
	for i, ev := range events {
		ws[i] = toWire(ev)
	}
	return json.Marshal(ws)
}

// decodeEvents decodes what encodeEvents made. Every node wrote it, but a
// node of another version (or a stray publisher on the subjects) may not
// have: what does not decode, or names no kind this node knows, is an
// error, and the caller skips the message.
func decodeEvents(data []byte) ([]*hub.Event, error) {
	var ws []wireEvent
	if err := json.Unmarshal(data, &ws); err != nil {
		return nil, fmt.Errorf("decode events: %w", err)
	}
	out := make([]*hub.Event, len(ws))
	for i := range ws {
		if ws[i].Kind < hub.KindMessage || ws[i].Kind > hub.KindRefused {
			return nil, fmt.Errorf("decode events: unknown kind %d", ws[i].Kind)
		}
		out[i] = ws[i].event()
	}
	return out, nil
}
