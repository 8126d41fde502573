// Package admission decides whether a new connection may be served: a cap on
// all connections, a cap per client IP, and a per-IP rate of new connections
// (a token bucket from golang.org/x/time/rate). One Controller is shared by
// every front, so the caps count TCP and WebSocket clients together.
package admission

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for Options.
const (
	DefaultMaxConns      = 20000
	DefaultMaxConnsPerIP = 100
	DefaultConnRatePerIP = 20 // new connections per second
	DefaultConnBurst     = 50
)

// Refusals, as error values whose text a client may be shown.
var (
	ErrTooManyConns      = errors.New("server full: too many connections")
	ErrTooManyConnsPerIP = errors.New("too many connections from your address")
	ErrConnRate          = errors.New("connecting too fast from your address")
)

// Observer is told of admissions; metrics implement it.
type Observer interface {
	ConnOpened(front string)
	ConnClosed(front string)
	Refused(reason string)
}

// Options configure a Controller. The zero value of each field is its
// documented default; a negative value lifts that limit.
type Options struct {
	MaxConns      int     // all connections; default DefaultMaxConns
	MaxConnsPerIP int     // per client IP; default DefaultMaxConnsPerIP
	ConnRatePerIP float64 // new connections per second per IP; default DefaultConnRatePerIP
	ConnBurst     int     // burst of new connections per IP; default DefaultConnBurst
	Observer      Observer
}

// Controller admits connections. Its methods are safe for concurrent use.
type Controller struct {
	opts Options

	mu        sync.Mutex // guards everything below
	total     int
	perIP     map[netip.Addr]*client
	lastSweep time.Time
}

type client struct {
	conns   int
	limiter *rate.Limiter // nil when the rate is unlimited
}

// New returns a controller.
func New(opts Options) *Controller {
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxConnsPerIP == 0 {
		opts.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if opts.ConnRatePerIP == 0 {
		opts.ConnRatePerIP = DefaultConnRatePerIP
	}
	if opts.ConnBurst <= 0 {
		opts.ConnBurst = DefaultConnBurst
	}
	return &Controller{opts: opts, perIP: make(map[netip.Addr]*client)}
}

// Admit asks to serve a connection from remote ("ip:port") on front ("tcp",
// "ws"). On success the caller must call release when the connection ends
// (more calls are no-ops). Behind a reverse proxy every client has the
// proxy's address: raise the per-IP limits there.
func (c *Controller) Admit(front, remote string) (release func(), err error) {
	ip := addrIP(remote)
	now := time.Now()
	c.mu.Lock()
	c.sweepLocked(now)
	cl := c.perIP[ip]
	if cl == nil {
		cl = &client{}
		if c.opts.ConnRatePerIP > 0 {
			cl.limiter = rate.NewLimiter(rate.Limit(c.opts.ConnRatePerIP), c.opts.ConnBurst)
		}
		c.perIP[ip] = cl
	}
	switch {
	case c.opts.MaxConns > 0 && c.total >= c.opts.MaxConns:
		err = ErrTooManyConns
	case c.opts.MaxConnsPerIP > 0 && cl.conns >= c.opts.MaxConnsPerIP:
		err = ErrTooManyConnsPerIP
	case cl.limiter != nil && !cl.limiter.AllowN(now, 1):
		err = ErrConnRate
	}
	if err == nil {
		c.total++
		cl.conns++
	}
	c.mu.Unlock()

	if err != nil {
		c.observe(func(o Observer) { o.Refused(reasonLabel(err)) })
		return nil, err
	}
	c.observe(func(o Observer) { o.ConnOpened(front) })
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.total--
			cl.conns--
			c.mu.Unlock()
			c.observe(func(o Observer) { o.ConnClosed(front) })
		})
	}, nil
}

// Len returns the number of admitted connections.
func (c *Controller) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

func (c *Controller) observe(f func(Observer)) {
	if c.opts.Observer != nil {
		f(c.opts.Observer)
	}
}

// sweepLocked forgets, at most once a minute, addresses with no connection
// whose bucket has refilled: remembering them would change nothing.
func (c *Controller) sweepLocked(now time.Time) {
	if now.Sub(c.lastSweep) < time.Minute {
		return
	}
	c.lastSweep = now
	for ip, cl := range c.perIP {
		if cl.conns == 0 && (cl.limiter == nil || cl.limiter.TokensAt(now) >= float64(c.opts.ConnBurst)) {
			delete(c.perIP, ip)
		}
	}
}

// Peer returns the client address that limits are kept per ("ip:port" →
// "ip"), for quotas kept elsewhere (the hub's rooms per address).
func Peer(remote string) string { return addrIP(remote).String() }

// addrIP returns the IP of "ip:port"; unparseable addresses all share the
// zero Addr, which is limited like any other.
func addrIP(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	if host, _, err := net.SplitHostPort(remote); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func reasonLabel(err error) string {
	switch {
	case errors.Is(err, ErrTooManyConns):
		return "server_full"
	case errors.Is(err, ErrTooManyConnsPerIP):
		return "conns_per_ip"
	default:
		return "conn_rate"
	}
}
