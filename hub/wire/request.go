package wire

import (
	"chatroom/hub"
	"chatroom/hub/wire/proto"
)

// PositionOf is where a request resumes from (the zero Position: a plain
// join or login).
func PositionOf(r proto.Request) hub.Position { return hub.Position{Epoch: r.Epoch, Seq: r.After} }
