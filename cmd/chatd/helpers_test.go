package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitTime bounds every wait in these tests: they wait on events, never on
// the clock, and fail if the event does not come in time.
const waitTime = 10 * time.Second

// startServer runs a chatd on loopback ports chosen by the kernel and stops
// it when the test ends.
func startServer(t *testing.T, mutate ...func(*Config)) *Main {
	t.Helper()
	cfg := Config{
		TCPAddr:  "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, f := range mutate {
		f(&cfg)
	}
	m := NewMain(cfg)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTime)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// msg is any server object, decoded loosely.
type msg map[string]any

func (m msg) str(k string) string { s, _ := m[k].(string); return s }
func (m msg) num(k string) int64  { f, _ := m[k].(float64); return int64(f) }

// client is a test client over TCP or WebSocket. The tests write requests
// as raw JSON on purpose, as an outside client would: a test of the wire
// that used the server's own protocol constants would not notice a
// constant renamed on both sides at once.
type client struct {
	t    *testing.T
	name string
	// send writes raw bytes as one write (TCP) or one text message (WS),
	// failing the test on error.
	send func(raw string)
	// rawWrite is send that returns the error instead.
	rawWrite func([]byte) error
	// recv returns the next object, or an error after the deadline or EOF.
	recv  func(deadline time.Time) (msg, []byte, error)
	close func()
	id    int64
}

func dialTCP(t *testing.T, m *Main, name string) *client {
	t.Helper()
	return tcpClient(t, dial(t, m.TCPAddr()), name)
}

// dial connects to a TCP address.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTime)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tcpClient is a test client on connection c.
func tcpClient(t *testing.T, c net.Conn, name string) *client {
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	return &client{
		t: t, name: name,
		send: func(raw string) {
			if _, err := c.Write([]byte(raw)); err != nil {
				t.Errorf("%s: write: %v", name, err)
			}
		},
		rawWrite: func(b []byte) error {
			c.SetWriteDeadline(time.Now().Add(waitTime))
			_, err := c.Write(b)
			return err
		},
		recv: func(deadline time.Time) (msg, []byte, error) {
			c.SetReadDeadline(deadline)
			line, err := r.ReadBytes('\n')
			if err != nil {
				return nil, line, err
			}
			return decodeMsg(line)
		},
		close: func() { c.Close() },
	}
}

func dialWS(t *testing.T, m *Main, name string) *client {
	t.Helper()
	return wsClient(t, m, name, nil)
}

// wsClient dials a WebSocket test client with opts.
func wsClient(t *testing.T, m *Main, name string, opts *websocket.DialOptions) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+m.HTTPAddr()+"/ws", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	ws.SetReadLimit(16 << 20) // a history page of big messages is over the library's 32 KiB default
	return &client{
		t: t, name: name,
		send: func(raw string) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTime)
			defer cancel()
			if err := ws.Write(ctx, websocket.MessageText, []byte(raw)); err != nil {
				t.Errorf("%s: write: %v", name, err)
			}
		},
		rawWrite: func(b []byte) error {
			ctx, cancel := context.WithTimeout(context.Background(), waitTime)
			defer cancel()
			return ws.Write(ctx, websocket.MessageText, b)
		},
		recv: func(deadline time.Time) (msg, []byte, error) {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			defer cancel()
			_, data, err := ws.Read(ctx)
			if err != nil {
				return nil, nil, err
			}
			return decodeMsg(data)
		},
		close: func() { ws.Close(websocket.StatusNormalClosure, "bye") },
	}
}

// next returns the next object or fails the test.
func (c *client) next() msg {
	c.t.Helper()
	m, raw, err := c.recv(time.Now().Add(waitTime))
	if err != nil {
		c.t.Fatalf("%s: waiting for a message: %v (got %q)", c.name, err, raw)
	}
	return m
}

// await reads until an object satisfies ok, failing after waitTime.
func (c *client) await(what string, ok func(msg) bool) msg {
	c.t.Helper()
	deadline := time.Now().Add(waitTime)
	for {
		m, raw, err := c.recv(deadline)
		if err != nil {
			c.t.Fatalf("%s: waiting for %s: %v (last %q)", c.name, what, err, raw)
		}
		if ok(m) {
			return m
		}
	}
}

// awaitMessage waits for a chat message with this text.
func (c *client) awaitMessage(text string) msg {
	c.t.Helper()
	return c.await(fmt.Sprintf("message %q", text), func(m msg) bool {
		return m.str("message") == text && m.num("sender_id") != 0
	})
}

// awaitClosed reads until the server ends the connection, returning what
// came before.
func (c *client) awaitClosed() ([]msg, error) {
	c.t.Helper()
	deadline := time.Now().Add(waitTime)
	var got []msg
	for {
		m, _, err := c.recv(deadline)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				c.t.Fatalf("%s: connection still open after %s", c.name, waitTime)
			}
			if errors.Is(err, io.EOF) || websocket.CloseStatus(err) != -1 || errors.Is(err, net.ErrClosed) || isReset(err) {
				return got, err
			}
			c.t.Fatalf("%s: %v", c.name, err)
		}
		got = append(got, m)
	}
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

// login logs in with the extended protocol and returns the reply.
func (c *client) login(nick string) msg {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"login","nickname":%q,"protocol":1}`, nick))
	reply := c.await("login reply", func(m msg) bool { return m.str("type") == "login" })
	if reply.str("status") != "ok" || reply.num("id") <= 0 {
		c.t.Fatalf("%s: login as %q refused: %v", c.name, nick, reply)
	}
	c.id = reply.num("id")
	return reply
}

// loginOriginal logs in exactly as the seed's Python client does.
func (c *client) loginOriginal(nick string) msg {
	c.t.Helper()
	b, _ := json.Marshal(nick)
	c.send(`{"type": "login", "nickname": ` + string(b) + `}`)
	reply := c.next()
	if reply.num("id") <= 0 {
		c.t.Fatalf("%s: login refused: %v", c.name, reply)
	}
	c.id = reply.num("id")
	return reply
}

func (c *client) say(text string) {
	b, _ := json.Marshal(text)
	c.send(`{"type":"broadcast","message":` + string(b) + `}`)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// trySend writes raw bytes and reports whether the connection took them.
func (c *client) trySend(b []byte) bool {
	return c.rawWrite(b) == nil
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to files and
// returns them with a pool that trusts it.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chatd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// poll reports whether cond becomes true within waitTime. It is for state
// with no event to wait on (counts that fall once goroutines finish).
func poll(cond func() bool) bool {
	deadline := time.Now().Add(waitTime)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// waitFor fails the test unless cond becomes true within waitTime.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !poll(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// decodeMsg parses one object the server sent, and returns it with its bytes.
func decodeMsg(data []byte) (msg, []byte, error) {
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, data, fmt.Errorf("server sent invalid JSON %q: %w", data, err)
	}
	return m, data, nil
}
