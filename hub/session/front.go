package session

import (
	"context"

	"chatroom/hub"
)

// Front is the part of a front's life that is the same over TCP and
// WebSocket: every connection's session runs in one Group, the sessions
// share a Flusher (the front's own when Options has none, closed by
// Shutdown), and Shutdown disconnects them all. What differs (accepting
// connections, admission, framing) stays in the fronts.
type Front struct {
	hub   *hub.Hub
	opts  Options
	group Group
	own   *Flusher
}

// NewFront returns a front's session side for h; opts are every session's
// (a connection adds its own LogAttrs and Peer).
func NewFront(h *hub.Hub, opts Options) *Front {
	f := &Front{hub: h}
	if opts.Flusher == nil {
		f.own = NewFlusher(0)
		opts.Flusher = f.own
	}
	f.opts = opts
	return f
}

// Options returns the sessions' options, Flusher set.
func (f *Front) Options() Options { return f.opts }

// NewSession returns a session for conn on the front's hub.
func (f *Front) NewSession(conn Conn, opts Options) *Session { return New(f.hub, conn, opts) }

// Run runs s until it ends, or refuses it (aborting its connection) once
// Shutdown has begun. Sessions get no context to be cancelled by:
// Shutdown ends them by disconnecting them, each after its queue is
// written. (Small enough to be inlined: its caller's frame is on every
// idle connection's stack, see Session.Run.)
func (f *Front) Run(s *Session) error { return f.group.Run(context.Background(), s) }

// Len returns the number of live sessions.
func (f *Front) Len() int { return f.group.Len() }

// Shutdown disconnects every session with hub.DisconnectShutdown (each
// first writes what is queued for it), waits for them, aborting the rest
// when ctx expires, and then closes the front's own Flusher.
func (f *Front) Shutdown(ctx context.Context) error {
	err := f.group.Shutdown(ctx)
	if f.own != nil {
		f.own.Close() // after the sessions: none is left to flush
	}
	return err
}
