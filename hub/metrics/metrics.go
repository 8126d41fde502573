// Package metrics exposes the chat server's Prometheus metrics. One Metrics
// value implements the observers of the hub, the sessions and admission
// control, and registers its collectors in a registry of the caller's (there
// is no global registry).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"chatroom/hub"
)

// Metrics holds the collectors.
type Metrics struct {
	connections *prometheus.GaugeVec
	refusals    *prometheus.CounterVec
	disconnects *prometheus.CounterVec
	logins      prometheus.Counter
	messagesIn  prometheus.Counter
	framesOut   prometheus.Counter
	queueDepth  prometheus.Histogram
	fanOut      prometheus.Histogram
}

// New creates the collectors and registers them with reg, together with a
// gauge of the room's members as members reports them.
func New(reg prometheus.Registerer, members func() int) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chat_connections", Help: "Open client connections, by front (tcp, ws).",
		}, []string{"front"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_refusals_total", Help: "Refused connections and requests, by reason.",
		}, []string{"reason"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_disconnects_total", Help: "Connections the server ended, by reason (slow_consumer, timeout, abuse, bad_input, shutdown, ...).",
		}, []string{"reason"}),
		logins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_logins_total", Help: "Successful logins.",
		}),
		messagesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_messages_in_total", Help: "Chat messages accepted into the room.",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_frames_out_total", Help: "Objects written to clients (deliveries, replies, notices).",
		}),
		queueDepth: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chat_send_queue_depth", Help: "Items waiting in a client's send queue when its writer drained it.",
			Buckets: []float64{1, 2, 4, 8, 16, 64, 256, 1024},
		}),
		fanOut: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chat_fanout_seconds", Help: "Time to queue one event for every member.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}),
	}
	reg.MustRegister(m.connections, m.refusals, m.disconnects, m.logins, m.messagesIn, m.framesOut, m.queueDepth, m.fanOut,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_members", Help: "Members logged in to the room."},
			func() float64 { return float64(members()) }))
	return m
}

// ConnOpened implements admission.Observer.
func (m *Metrics) ConnOpened(front string) { m.connections.WithLabelValues(front).Inc() }

// ConnClosed implements admission.Observer.
func (m *Metrics) ConnClosed(front string) { m.connections.WithLabelValues(front).Dec() }

// Refused implements admission.Observer and session.Observer.
func (m *Metrics) Refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

// LoggedIn implements session.Observer.
func (m *Metrics) LoggedIn() { m.logins.Inc() }

// Disconnected implements session.Observer.
func (m *Metrics) Disconnected(code hub.DisconnectCode) {
	m.disconnects.WithLabelValues(code.String()).Inc()
}

// Wrote implements session.Observer.
func (m *Metrics) Wrote(frames int) { m.framesOut.Add(float64(frames)) }

// Drained implements session.Observer.
func (m *Metrics) Drained(items int) { m.queueDepth.Observe(float64(items)) }

// FannedOut implements hub.Observer.
func (m *Metrics) FannedOut(kind hub.Kind, _ int, took time.Duration) {
	if kind == hub.KindMessage {
		m.messagesIn.Inc()
	}
	m.fanOut.Observe(took.Seconds())
}
