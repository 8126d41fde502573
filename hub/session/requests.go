package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"syscall"

	"chatroom/hub"
	"chatroom/hub/wire"
	"chatroom/hub/wire/proto"
)

// safeReadLoop is readLoop with a panic contained to this connection.
func (s *Session) safeReadLoop(ctx context.Context) (reason hub.Disconnect) {
	defer s.recoverReader(&reason)
	return s.readLoop(ctx)
}

// recoverReader, deferred by the reader, turns a panic into an internal
// error that ends this connection only.
func (s *Session) recoverReader(reason *hub.Disconnect) {
	p := recover()
	if p == nil {
		return
	}
	s.logAt(slog.LevelError, "panic serving connection", "panic", p, "stack", string(debug.Stack()))
	*reason = hub.Disconnect{Code: hub.CodeInternal, Reason: "internal error"}
	s.mu.Lock()
	s.closeLocked(*reason, true)
	s.mu.Unlock()
	s.Abort()
}

// readLoop reads and handles requests until the connection ends, and says
// why. Its frame is on every idle connection's stack: keep it small (see Run).
func (s *Session) readLoop(ctx context.Context) hub.Disconnect {
	for {
		frame, err := s.conn.ReadFrame()
		if err != nil {
			return s.readFailed(err)
		}
		if s.serveFrame(ctx, frame) {
			return *s.closingReason()
		}
	}
}

// serveFrame handles one request frame and reports whether the session must
// stop reading (it was cut off for abuse).
//
//go:noinline
func (s *Session) serveFrame(ctx context.Context, frame []byte) (stop bool) {
	if s.requests != nil && !s.requests.Allow() {
		s.refuse(proto.Request{Type: "?"}, errRateLimited)
	} else {
		s.handle(ctx, frame)
	}
	d := s.closingReason()
	return d != nil && d.Code == hub.CodeAbuse
}

// readFailed says why reading ended with err.
//
//go:noinline
func (s *Session) readFailed(err error) hub.Disconnect {
	var d hub.Disconnect
	switch {
	case errors.As(err, &d):
		return d
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		// A reset is how a client that closes with unread data leaves; to
		// the room it is a plain leave.
		return hub.DisconnectLeft
	}
	s.logAt(slog.LevelDebug, "read failed", "id", s.self.ID, "err", err)
	return hub.Disconnect{Code: hub.CodeReadFailed, Reason: "connection lost"}
}

// Refusals the session itself makes.
var (
	errRateLimited     = errors.New("rate limited: slow down")
	errUnknownType     = errors.New("unknown request type")
	errAlreadyLoggedIn = errors.New("already logged in")
	errRepliesWaiting  = errors.New("too many replies waiting: read them first")
)

// refusalLabel classifies a refusal for metrics, in few enough classes to
// be a label.
func refusalLabel(err error) string {
	switch {
	case errors.Is(err, errRateLimited):
		return "rate_limited"
	case errors.Is(err, errRepliesWaiting):
		return "replies_waiting"
	case errors.Is(err, hub.ErrRecipientBusy):
		return "recipient_busy"
	case errors.Is(err, proto.ErrSpoofedSender):
		return "spoofed_sender"
	case errors.Is(err, proto.ErrBadRequest):
		return "bad_request"
	case errors.Is(err, errUnknownType):
		return "unknown_type"
	case errors.Is(err, hub.ErrNotMember), errors.Is(err, errAlreadyLoggedIn):
		return "wrong_state"
	case errors.Is(err, hub.ErrMessageInvalid):
		return "invalid_message"
	case errors.Is(err, hub.ErrNicknameInvalid), errors.Is(err, hub.ErrNicknameTaken):
		return "nickname"
	}
	return "other"
}
func (s *Session) handle(ctx context.Context, frame []byte) {
	req, err := proto.DecodeRequest(frame)
	if err != nil {
		s.refuse(req, err)
		return
	}
	if req.Type == proto.TypeLogin {
		s.login(ctx, req)
		return
	}
	if !s.loggedIn.Load() {
		s.refuse(req, hub.ErrNotMember)
		return
	}
	if err := s.serve(ctx, req); err != nil {
		s.refuse(req, err)
	}
}

// serve carries out a logged-in member's request. Requests beyond the
// original protocol's are for extended clients, but nothing breaks if an
// original client sends them: their replies are extended objects, which
// only a client that knows the request would send it.
func (s *Session) serve(ctx context.Context, req proto.Request) error {
	id := s.self.ID
	switch req.Type {
	case proto.TypeJoin, proto.TypeLeave, proto.TypeRooms, proto.TypeHistory, proto.TypeMembers, proto.TypeNick, proto.TypeSearch:
		if s.repliesBacklogged() {
			return errRepliesWaiting
		}
	}
	switch req.Type {
	case proto.TypeBroadcast:
		if err := req.CheckSender(id); err != nil {
			s.logAt(slog.LevelWarn, "spoofed sender refused", "id", id, "claimed", string(req.SenderID))
			return err
		}
		return s.hub.Publish(ctx, id, req.Room, req.Message)
	case proto.TypePrivate:
		if req.ToID != 0 {
			return s.hub.PrivateTo(ctx, id, req.ToID, req.Message)
		}
		return s.hub.Private(ctx, id, req.To, req.Message)
	case proto.TypeJoin:
		_, err := s.hub.JoinRoomFrom(ctx, id, req.Room, wire.PositionOf(req))
		return err
	case proto.TypeLeave:
		_, err := s.hub.LeaveRoom(ctx, id, req.Room)
		return err
	case proto.TypeTyping:
		return s.hub.Typing(ctx, id, req.Room)
	case proto.TypeNick:
		self, err := s.hub.Rename(ctx, id, req.Nickname)
		if err != nil {
			return err
		}
		s.self = self
		s.reply(wire.Nick(self))
	case proto.TypeRooms:
		s.reply(wire.Rooms(s.hub.Rooms(id)))
	case proto.TypeHistory:
		limit := req.Limit
		if limit <= 0 || limit > maxHistoryPage {
			limit = maxHistoryPage
		}
		room, events, err := s.hub.RoomHistory(id, req.Room, req.Before, limit)
		if err != nil {
			return err
		}
		s.reply(wire.History(room, req.Before, events))
	case proto.TypeSearch:
		limit := req.Limit
		if limit <= 0 || limit > maxHistoryPage {
			limit = defaultSearchLimit
		}
		room, events, err := s.hub.Search(id, req.Room, req.Query, limit)
		if err != nil {
			return err
		}
		s.reply(wire.Search(room, req.Query, events))
	case proto.TypeMembers:
		room, members, err := s.hub.RoomMembers(id, req.Room)
		if err != nil {
			return err
		}
		if s.isExtended() {
			s.reply(wire.Members(room, members))
			return nil
		}
		names := make([]string, len(members))
		for i, m := range members {
			names[i] = m.Nickname
		}
		s.reply(wire.OriginalPushes(hub.System, "online: "+strings.Join(names, ", "))...)
	default:
		return errUnknownType
	}
	return nil
}

// maxHistoryPage bounds one history or search reply; defaultSearchLimit is
// a search's when it names none.
const (
	maxHistoryPage     = 200
	defaultSearchLimit = 50
)

func (s *Session) login(ctx context.Context, req proto.Request) {
	if s.loggedIn.Load() {
		s.refuse(req, errAlreadyLoggedIn)
		return
	}
	s.mu.Lock()
	s.extended = req.Extended()
	s.mu.Unlock()
	self, err := s.hub.LoginFrom(ctx, s.opts.Peer, req.Nickname, s, wire.PositionOf(req))
	if err != nil {
		s.logAt(slog.LevelInfo, "login refused", "err", err)
		s.opts.Observer.Refused(refusalLabel(err))
		s.reply(wire.LoginError(err.Error(), req.Extended()))
		return
	}
	s.self = self
	s.loggedIn.Store(true)
	s.stopLoginTimer()
	s.opts.Observer.LoggedIn()
}

// refuse answers a request that cannot be carried out: an error object to an
// extended client, a printable System push to a logged-in original client,
// and only a log line to an original client that has not logged in (it cannot
// parse anything else).
func (s *Session) refuse(req proto.Request, err error) {
	s.logAt(slog.LevelDebug, "request refused", "id", s.self.ID, "type", req.Type, "err", err)
	s.opts.Observer.Refused(refusalLabel(err))
	if !s.refusals.Allow() {
		s.mu.Lock()
		s.closeLocked(hub.Disconnect{Code: hub.CodeAbuse, Reason: "too many refused requests"}, false)
		s.mu.Unlock()
		return
	}
	switch {
	case s.isExtended() || req.Extended():
		s.reply(wire.Error(req.Type, err.Error()))
	case s.loggedIn.Load():
		s.reply(wire.OriginalError(err.Error())...)
	}
}
