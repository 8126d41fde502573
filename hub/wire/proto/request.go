package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Request types a client can send. Only login and broadcast exist in the
// original protocol; the rest are extended.
const (
	TypeLogin     = "login"
	TypeBroadcast = "broadcast"
	TypeMembers   = "members"
	TypeJoin      = "join"
	TypeLeave     = "leave"
	TypeRooms     = "rooms"
	TypeHistory   = "history"
	TypePrivate   = "private"
	TypeNick      = "nick"
	TypeTyping    = "typing"
	TypeSearch    = "search"
)

// ProtocolExtended is the protocol number a client sends at login to receive
// the extended shape.
const ProtocolExtended = 1

// ErrBadRequest is wrapped by every decoding error.
var ErrBadRequest = errors.New("bad request")

// ErrSpoofedSender is wrapped by CheckSender's refusals.
var ErrSpoofedSender = errors.New("spoofed sender")

// Request is one client request: what the server decodes, and what a Go
// client (cmd/chat, cmd/chatbench) encodes. Fields a type does not use are
// ignored, and left out when encoded.
type Request struct {
	Type     string `json:"type"`
	Nickname string `json:"nickname,omitempty"`
	Message  string `json:"message,omitempty"`
	// Protocol is ProtocolExtended from clients that opt in to the extended
	// shape; 0 (absent) means the original protocol.
	Protocol int `json:"protocol,omitempty"`
	// SenderID is what the client claims to be; see CheckSender.
	SenderID json.RawMessage `json:"sender_id,omitempty"`
	// Room names the room of a broadcast, join, leave, members, history or
	// typing request; empty means the lobby.
	Room string `json:"room,omitempty"`
	// To is the nickname a private message is for.
	To string `json:"to,omitempty"`
	// ToID, when not 0, is the id of the member a private message is for
	// (and To is ignored).
	ToID int64 `json:"to_id,omitempty"`
	// Before asks history for messages with a lower seq (0: the latest).
	Before uint64 `json:"before,omitempty"`
	// Limit bounds a history or search reply.
	Limit int `json:"limit,omitempty"`
	// Epoch and After resume a room (the lobby, for a login): the
	// history's epoch (from the login reply) and the last seq the client
	// has there. Either one set asks to resume.
	Epoch string `json:"epoch,omitempty"`
	After uint64 `json:"after,omitempty"`
	// Query is what a search looks for.
	Query string `json:"query,omitempty"`
}

// DecodeRequest parses one frame. It refuses invalid UTF-8, anything but a
// JSON object, and fields of the wrong type, with an error that says which.
func DecodeRequest(frame []byte) (Request, error) {
	var req Request
	if !utf8.Valid(frame) {
		return req, fmt.Errorf("%w: not valid UTF-8", ErrBadRequest)
	}
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return req, fmt.Errorf("%w: not a JSON object", ErrBadRequest)
	}
	if err := json.Unmarshal(frame, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return req, fmt.Errorf("%w: field %q must be a %s", ErrBadRequest, typeErr.Field, typeErr.Type.Kind())
		}
		return req, fmt.Errorf("%w: malformed JSON", ErrBadRequest)
	}
	if req.Type == "" {
		return req, fmt.Errorf("%w: missing \"type\"", ErrBadRequest)
	}
	return req, nil
}

// Extended reports whether the request asks for the extended protocol.
func (r Request) Extended() bool { return r.Protocol >= ProtocolExtended }

// CheckSender verifies the optional sender_id the original client sends with
// every message: absent or null is fine, anything but the sender's own id is
// refused (the seed server trusted it, which let anyone speak as anyone).
func (r Request) CheckSender(self int64) error {
	raw := bytes.TrimSpace(r.SenderID)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var claimed int64
	if err := json.Unmarshal(raw, &claimed); err != nil || claimed != self {
		return fmt.Errorf("%w: sender_id %s is not your id (%d)", ErrSpoofedSender, raw, self)
	}
	return nil
}
