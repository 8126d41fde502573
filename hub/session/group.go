package session

import (
	"context"
	"errors"
	"sync"

	"chatroom/hub"
)

// ErrGroupClosed is returned by Group.Run after Shutdown has begun.
var ErrGroupClosed = errors.New("session group is shut down")

// Group tracks a front's live sessions so that shutdown can reach every one,
// including connections that never logged in (and connections the HTTP server
// no longer tracks once they are hijacked for WebSocket). The zero value is
// ready to use.
type Group struct {
	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// Run runs s until it ends. It refuses (aborting s's connection) once the
// group is shutting down. Its frame stays on the session's stack while the
// connection idles, so the bookkeeping is in callees (see Session.Run).
func (g *Group) Run(ctx context.Context, s *Session) error {
	if !g.add(s) {
		s.conn.Abort()
		return ErrGroupClosed
	}
	defer g.remove(s)
	s.Run(ctx)
	return nil
}

//go:noinline
func (g *Group) add(s *Session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.sessions == nil {
		g.sessions = make(map[*Session]struct{})
	}
	g.sessions[s] = struct{}{}
	g.wg.Add(1)
	return true
}

//go:noinline
func (g *Group) remove(s *Session) {
	g.mu.Lock()
	delete(g.sessions, s)
	g.mu.Unlock()
	g.wg.Done()
}

// Len returns the number of live sessions.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// Shutdown disconnects every session with hub.DisconnectShutdown, letting
// each write what it has queued, and waits for them to end. When ctx expires
// first, the remaining connections are aborted and ctx's error returned.
func (g *Group) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	live := make([]*Session, 0, len(g.sessions))
	for s := range g.sessions {
		live = append(live, s)
	}
	g.mu.Unlock()

	for _, s := range live {
		s.Disconnect(hub.DisconnectShutdown)
	}
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, s := range live {
			s.Abort()
		}
		<-done
		return ctx.Err()
	}
}
