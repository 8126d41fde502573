package proto

import "encoding/json"

// Message is anything the server sends a client, decoded loosely: each
// kind of object fills the fields it has (README, "Wire protocol", lists
// them), and an original-shape push fills SenderID, SenderNickname and
// Message only.
type Message struct {
	Type           string   `json:"type"`
	Status         string   `json:"status"`
	ID             int64    `json:"id"`
	Nickname       string   `json:"nickname"`
	Epoch          string   `json:"epoch"`
	Error          string   `json:"error"`
	Request        string   `json:"request"`
	Room           string   `json:"room"`
	Seq            int64    `json:"seq"`
	Time           string   `json:"time"`
	SenderID       int64    `json:"sender_id"`
	SenderNickname string   `json:"sender_nickname"`
	ToID           int64    `json:"to_id"`
	ToNickname     string   `json:"to_nickname"`
	Message        string   `json:"message"`
	Member         Member   `json:"member"`
	OldNickname    string   `json:"old_nickname"`
	Reason         string   `json:"reason"`
	Members        []Member `json:"members"`
	// History is, in "joined", the room's history (see HistoryMessages);
	// in an entry of a history, the flag true.
	History  json.RawMessage `json:"history"`
	Messages []Message       `json:"messages"`
	Rooms    []RoomInfo      `json:"rooms"`
	Resumed  bool            `json:"resumed"`
	Gap      bool            `json:"gap"`
	More     bool            `json:"more"`
	Query    string          `json:"query"`
}

// HistoryMessages decodes a "joined" reply's history (none if it has none).
func (m Message) HistoryMessages() []Message {
	var out []Message
	_ = json.Unmarshal(m.History, &out) // absent, or not an array: none
	return out
}

// Member is a member as the server names one.
type Member struct {
	ID       int64  `json:"id"`
	Nickname string `json:"nickname"`
}

// RoomInfo is one room of a "rooms" reply.
type RoomInfo struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
	Joined  bool   `json:"joined"`
}
