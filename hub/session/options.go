package session

import (
	"log/slog"
	"time"

	"chatroom/hub"
)

// Conn is a client connection as a session needs it. Fronts implement it.
type Conn interface {
	// ReadFrame returns the next request frame, valid until the next call.
	// An error that is a hub.Disconnect ends the session with that reason.
	ReadFrame() ([]byte, error)
	// WriteFrames writes frames in order, as few writes as the transport
	// allows, giving up at deadline.
	WriteFrames(frames [][]byte, deadline time.Time) error
	// Close ends the connection after telling the peer why, where the
	// transport can (a WebSocket close status). It may take a moment.
	Close(d hub.Disconnect) error
	// Abort ends the connection at once. It is safe to call concurrently
	// with anything, and more than once.
	Abort()
}

// Defaults for Options.
const (
	DefaultQueueMessages = 1024
	DefaultQueueBytes    = 1 << 20
	DefaultWriteTimeout  = 10 * time.Second
	DefaultLoginGap      = 50 * time.Millisecond
	DefaultPushGap       = 1 * time.Millisecond
	DefaultLoginTimeout  = 30 * time.Second
	DefaultRequestRate   = 10 // requests per second
	DefaultRequestBurst  = 20
	DefaultRefusalBurst  = 20
)

// Observer is told what sessions do; metrics implement it. Its methods must
// be cheap and must not block.
type Observer interface {
	LoggedIn()
	Refused(reason string)
	Disconnected(code hub.DisconnectCode)
	Wrote(frames int)
	Drained(items int)
}
type nopObserver struct{}

func (nopObserver) LoggedIn()                       {}
func (nopObserver) Refused(string)                  {}
func (nopObserver) Disconnected(hub.DisconnectCode) {}
func (nopObserver) Wrote(int)                       {}
func (nopObserver) Drained(int)                     {}

// Options tune a session. The zero value of every field is the documented
// default.
type Options struct {
	// QueueMessages bounds the items waiting to be written. Default
	// DefaultQueueMessages.
	QueueMessages int
	// QueueBytes bounds the bytes waiting to be written. Default
	// DefaultQueueBytes.
	QueueBytes int
	// WriteTimeout bounds each write to the socket; a peer that does not
	// read within it is disconnected. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// LoginGap is how long nothing follows the login reply to an
	// original-protocol client, so that its recv(1024) does not see the reply
	// and the next push as one (unparseable) read. Default DefaultLoginGap.
	LoginGap time.Duration
	// PushGap is the least time between two pushes to an original-protocol
	// client. That client parses each recv(1024) as exactly one object, so
	// two pushes that reach it before it reads again are lost as one
	// unparseable read; a short gap lets it keep up. It caps such a client at
	// 1/PushGap pushes a second (a busier room overflows its queue and drops
	// it as a slow consumer). Extended clients are never paced. Default
	// DefaultPushGap; negative disables.
	PushGap time.Duration
	// LoginTimeout is how long a connection may stay without logging in.
	// The original client connects first and its user then types "login",
	// so this allows for a person. Default DefaultLoginTimeout.
	LoginTimeout time.Duration
	// RequestRate and RequestBurst limit the requests a connection may make
	// (a token bucket): excess requests are refused with an error. Defaults
	// DefaultRequestRate per second and DefaultRequestBurst; a negative rate
	// lifts the limit.
	RequestRate  float64
	RequestBurst int
	// RefusalBurst is how many refused requests in a row a connection may
	// make (the allowance refills at one per second) before it is
	// disconnected for abuse. Default DefaultRefusalBurst.
	RefusalBurst int
	// Flusher, when set, writes extended clients' queues from its shared
	// goroutines where the Conn is a TryWriter (see Flusher). Default: every
	// session writes on a goroutine of its own while it has something to.
	Flusher *Flusher
	// Observer is told of logins, refusals, drops and writes. Default: none.
	Observer Observer
	// Logger receives connection lifecycle logs. Default: discard.
	Logger *slog.Logger
	// Peer is the client's address as the connection limits count it (its
	// IP), for the hub's per-address quotas. Default: none (quotas per
	// member).
	Peer string
	// LogAttrs are added to every log line of the session, such as the
	// front and the remote address. (Cheaper per idle connection than a
	// Logger.With clone, which preformats them into a new handler.)
	LogAttrs []any
}

func (o Options) withDefaults() Options {
	if o.QueueMessages <= 0 {
		o.QueueMessages = DefaultQueueMessages
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.LoginGap <= 0 {
		o.LoginGap = DefaultLoginGap
	}
	if o.PushGap == 0 {
		o.PushGap = DefaultPushGap
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = DefaultLoginTimeout
	}
	if o.RequestRate == 0 {
		o.RequestRate = DefaultRequestRate
	}
	if o.RequestBurst <= 0 {
		o.RequestBurst = DefaultRequestBurst
	}
	if o.RefusalBurst <= 0 {
		o.RefusalBurst = DefaultRefusalBurst
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
