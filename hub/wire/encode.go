package wire

import (
	"strconv"

	"chatroom/hub/wire/proto"
	"unicode/utf8"

	"chatroom/hub"
)

// Encoding slots used with hub.Event.Encoding.
const (
	slotOriginal = iota
	slotExtended
)

// MaxOriginalFrame is the largest frame, newline included, sent to a client
// of the original protocol: it reads with recv(1024) and parses each read as
// one object.
const MaxOriginalFrame = 1023

// timeLayout is RFC 3339 in UTC with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// EncodeEvent returns the frames that carry ev in the requested shape, cached
// on the event so that each shape is encoded once per event. The returned
// frames are shared: callers must not modify them.
func EncodeEvent(ev *hub.Event, extended bool) [][]byte {
	switch ev.Kind { // one recipient each: nothing to share
	case hub.KindWelcome:
		return [][]byte{encodeWelcome(nil, ev, extended)}
	case hub.KindJoined:
		if !extended {
			return nil
		}
		return [][]byte{encodeJoined(ev)}
	case hub.KindRefused:
		if !extended {
			return OriginalError(ev.Reason)
		}
		b := appendString([]byte(`{"type":"error","request":"broadcast","room":`), ev.Room)
		b = appendString(append(b, `,"error":`...), ev.Reason)
		return [][]byte{append(b, "}\n"...)}
	case hub.KindLeft:
		if !extended {
			return nil
		}
		b := appendString([]byte(`{"type":"left","room":`), ev.Room)
		return [][]byte{append(b, "}\n"...)}
	}
	if extended {
		return ev.Encoding(slotExtended, encodeExtended)
	}
	return ev.Encoding(slotOriginal, encodeOriginal)
}

// encodeOriginal renders an event as {"sender_id","sender_nickname","message"}
// pushes, splitting long text so that every frame fits MaxOriginalFrame.
func encodeOriginal(ev *hub.Event) [][]byte {
	from, text := ev.From, ev.Text
	switch ev.Kind {
	case hub.KindJoin:
		text = "用户 " + ev.Subject.Nickname + "(" + strconv.FormatInt(ev.Subject.ID, 10) + ")加入聊天室"
	case hub.KindLeave:
		text = "用户 " + ev.Subject.Nickname + "(" + strconv.FormatInt(ev.Subject.ID, 10) + ")离开聊天室"
		if ev.Reason != "" && ev.Reason != hub.DisconnectLeft.Reason {
			text += " (" + ev.Reason + ")"
		}
	case hub.KindRename:
		text = "用户 " + ev.OldNickname + "(" + strconv.FormatInt(ev.Subject.ID, 10) + ")改名为 " + ev.Subject.Nickname
	case hub.KindPrivate:
		text = "[private] " + ev.Text
	case hub.KindTyping:
		return nil // not for the original client
	}
	return OriginalPushes(from, text)
}

// OriginalPushes encodes text from sender as one or more original-protocol
// pushes, each at most MaxOriginalFrame bytes. Text is split between
// characters, never inside one.
func OriginalPushes(from hub.Identity, text string) [][]byte {
	prefix := appendInt(append([]byte(nil), `{"sender_id":`...), from.ID)
	prefix = appendString(append(prefix, `,"sender_nickname":`...), from.Nickname)
	prefix = append(prefix, `,"message":"`...)
	const suffix = "\"}\n"
	room := MaxOriginalFrame - len(prefix) - len(suffix)

	var frames [][]byte
	for first := true; first || text != ""; first = false {
		// Find the longest prefix of text whose escaped form fits in room.
		n, size := 0, 0
		for n < len(text) {
			r, w := utf8.DecodeRuneInString(text[n:])
			esc := escapedLen(r, w)
			if size+esc > room {
				break
			}
			size += esc
			n += w
		}
		frame := make([]byte, 0, len(prefix)+size+len(suffix))
		frame = append(frame, prefix...)
		frame = appendStringBody(frame, text[:n])
		frame = append(frame, suffix...)
		frames = append(frames, frame)
		text = text[n:]
	}
	return frames
}

// EventType is the wire "type" of an event of kind k ("" for kinds that
// are not sent as themselves).
func EventType(k hub.Kind) string {
	if int(k) < len(eventTypes) {
		return eventTypes[k]
	}
	return ""
}

// eventTypes maps each kind sent as itself to the protocol's name for it.
var eventTypes = [...]string{
	hub.KindMessage: proto.EventMessage,
	hub.KindJoin:    proto.EventJoin,
	hub.KindLeave:   proto.EventLeave,
	hub.KindRename:  proto.EventRename,
	hub.KindNotice:  proto.EventNotice,
	hub.KindPrivate: proto.EventPrivate,
	hub.KindTyping:  proto.EventTyping,
	hub.KindJoined:  proto.EventJoined,
	hub.KindLeft:    proto.EventLeft,
}

// encodeExtended renders an event as one extended-protocol object.
func encodeExtended(ev *hub.Event) [][]byte {
	b := make([]byte, 0, 192+len(ev.Text))
	b = append(b, `{"type":"`...)
	b = append(b, EventType(ev.Kind)...)
	b = append(b, '"')
	if ev.Room != "" {
		b = appendString(append(b, `,"room":`...), ev.Room)
	}
	if ev.Seq != 0 {
		b = appendInt(append(b, `,"seq":`...), int64(ev.Seq))
	}
	b = append(b, `,"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, timeLayout)
	b = appendInt(append(b, `","sender_id":`...), ev.From.ID)
	b = appendString(append(b, `,"sender_nickname":`...), ev.From.Nickname)
	text := ev.Text
	switch ev.Kind {
	case hub.KindJoin:
		text = ev.Subject.Nickname + " joined"
	case hub.KindLeave:
		text = ev.Subject.Nickname + " left"
		if ev.Reason != "" && ev.Reason != hub.DisconnectLeft.Reason {
			text += " (" + ev.Reason + ")"
		}
	case hub.KindRename:
		text = ev.OldNickname + " is now " + ev.Subject.Nickname
	case hub.KindPrivate:
		b = appendInt(append(b, `,"to_id":`...), ev.To.ID)
		b = appendString(append(b, `,"to_nickname":`...), ev.To.Nickname)
	}
	if ev.Kind != hub.KindTyping {
		b = appendString(append(b, `,"message":`...), text)
	}
	switch ev.Kind {
	case hub.KindJoin, hub.KindLeave, hub.KindRename:
		b = appendMember(append(b, `,"member":`...), ev.Subject)
	}
	switch ev.Kind {
	case hub.KindLeave:
		b = appendString(append(b, `,"reason":`...), ev.Reason)
	case hub.KindRename:
		b = appendString(append(b, `,"old_nickname":`...), ev.OldNickname)
	}
	b = append(b, "}\n"...)
	return [][]byte{b}
}

// MaxHistoryBytes bounds the history one reply carries (a "joined" reply or
// a history page), encoded: the newest messages that fit are sent, and the
// reply says "more":true when older ones were left out for it. A room of
// big messages would otherwise make replies of megabytes.
const MaxHistoryBytes = 256 << 10

// encodeJoined renders the reply to joining a room: its members and its
// recent history.
func encodeJoined(ev *hub.Event) []byte {
	b := appendString([]byte(`{"type":"joined","room":`), ev.Room)
	b = appendMembers(append(b, `,"members":`...), ev.Members)
	b = appendHistory(append(b, `,"history":`...), ev.History)
	switch {
	case ev.Resumed:
		b = append(b, `,"resumed":true`...)
	case ev.Gap:
		b = append(b, `,"gap":true`...)
	}
	return append(b, "}\n"...)
}

// Search is the reply to a search request: room's messages containing
// query, newest first.
func Search(room, query string, events []*hub.Event) []byte {
	b := appendString([]byte(`{"type":"search","room":`), room)
	b = appendString(append(b, `,"query":`...), query)
	b = appendHistory(append(b, `,"messages":`...), events)
	return append(b, "}\n"...)
}

// History is the reply to a history request: messages of room before seq
// before, oldest first.
func History(room string, before uint64, events []*hub.Event) []byte {
	b := appendString([]byte(`{"type":"history","room":`), room)
	b = appendInt(append(b, `,"before":`...), int64(before))
	b = appendHistory(append(b, `,"messages":`...), events)
	return append(b, "}\n"...)
}

// appendHistory appends the newest of events (oldest first) that fit in
// MaxHistoryBytes as an array of message objects marked "history":true,
// reusing each event's cached encoding, and then `,"more":true` if any
// were left out.
func appendHistory(b []byte, events []*hub.Event) []byte {
	from, size := len(events), 0
	for from > 0 {
		n := len(EncodeEvent(events[from-1], true)[0]) + len(`,"history":true`)
		if size+n > MaxHistoryBytes {
			break
		}
		size += n
		from--
	}
	b = append(b, '[')
	for i, ev := range events[from:] {
		if i > 0 {
			b = append(b, ',')
		}
		frame := EncodeEvent(ev, true)[0]
		b = append(b, frame[:len(frame)-2]...) // without "}\n"
		b = append(b, `,"history":true}`...)
	}
	b = append(b, ']')
	if from > 0 {
		b = append(b, `,"more":true`...)
	}
	return b
}

// JoinedSizeBound is an upper bound on the size of ev's encoding (a
// KindJoined event), for a send queue to count it before it is encoded:
// JSON escaping at most doubles text (a message holds no control
// characters but newline and tab), and history stops at MaxHistoryBytes.
func JoinedSizeBound(ev *hub.Event) int {
	size := 64 + 2*len(ev.Room)
	for _, m := range ev.Members {
		size += 40 + 2*len(m.Nickname)
	}
	hist := 0
	for _, h := range ev.History {
		hist += messageSizeBound(h)
	}
	return size + min(hist, MaxHistoryBytes)
}

// messageSizeBound is an upper bound on an event's extended encoding (a
// message, or a join, leave or rename replayed on resume).
func messageSizeBound(ev *hub.Event) int {
	return 320 + 2*(len(ev.Room)+len(ev.From.Nickname)+3*len(ev.Subject.Nickname)+2*len(ev.OldNickname)+len(ev.Text)+len(ev.Reason))
}

// Rooms is the reply to a rooms request.
func Rooms(rooms []hub.RoomInfo) []byte {
	b := []byte(`{"type":"rooms","rooms":[`)
	for i, r := range rooms {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(append(b, `{"room":`...), r.Name)
		b = appendInt(append(b, `,"members":`...), int64(r.Members))
		b = strconv.AppendBool(append(b, `,"joined":`...), r.Joined)
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// Nick is the reply to a successful nick request.
func Nick(self hub.Identity) []byte {
	b := appendInt([]byte(`{"type":"nick","status":"ok","id":`), self.ID)
	b = appendString(append(b, `,"nickname":`...), self.Nickname)
	return append(b, "}\n"...)
}

// encodeWelcome renders the successful login reply. The original client only
// reads "id"; the extended reply also carries the member list.
func encodeWelcome(b []byte, ev *hub.Event, extended bool) []byte {
	if !extended {
		b = appendInt(append(b, `{"status":"ok","id":`...), ev.Subject.ID)
		return append(b, "}\n"...)
	}
	b = appendInt(append(b, `{"type":"login","status":"ok","id":`...), ev.Subject.ID)
	b = appendString(append(b, `,"nickname":`...), ev.Subject.Nickname)
	b = appendInt(append(b, `,"protocol":`...), proto.ProtocolExtended)
	b = appendString(append(b, `,"epoch":`...), ev.Epoch)
	return append(b, "}\n"...)
}

// LoginError is the refused-login reply. Its id is 0, which the original
// client treats as failure; the connection stays open for another try.
func LoginError(reason string, extended bool) []byte {
	b := []byte(`{"status":"error","id":0,"error":`)
	if extended {
		b = []byte(`{"type":"login","status":"error","id":0,"error":`)
	}
	b = appendString(b, reason)
	return append(b, "}\n"...)
}

// Error is the extended reply to a refused request of type request.
func Error(request, reason string) []byte {
	b := appendString([]byte(`{"type":"error","request":`), request)
	b = appendString(append(b, `,"error":`...), reason)
	return append(b, "}\n"...)
}

// OriginalError tells an original-protocol client that a request was
// refused, in the only shape it can print: a push from System.
func OriginalError(reason string) [][]byte {
	return OriginalPushes(hub.System, "[error] "+reason)
}

// Members is the extended reply to a members request.
func Members(room string, members []hub.Identity) []byte {
	b := appendString([]byte(`{"type":"members","room":`), room)
	b = appendMembers(append(b, `,"members":`...), members)
	return append(b, "}\n"...)
}

// Notice is a message from System outside the room's sequence, such as the
// reason for a disconnect, in either shape.
func Notice(text string, extended bool) [][]byte {
	if !extended {
		return OriginalPushes(hub.System, text)
	}
	b := appendString([]byte(`{"type":"notice","sender_id":0,"sender_nickname":"System","message":`), text)
	return [][]byte{append(b, "}\n"...)}
}

func appendMembers(b []byte, members []hub.Identity) []byte {
	b = append(b, '[')
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMember(b, m)
	}
	return append(b, ']')
}

func appendMember(b []byte, m hub.Identity) []byte {
	b = appendInt(append(b, `{"id":`...), m.ID)
	b = appendString(append(b, `,"nickname":`...), m.Nickname)
	return append(b, '}')
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }
