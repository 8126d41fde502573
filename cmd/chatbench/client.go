package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"chatroom/hub/wire/proto"
)

// wire is one benchmark client's connection: TCP (one object per line from
// the server) or WebSocket (one object per message).
type wire interface {
	write(b []byte) error
	// next returns the next object from the server, valid until the next call.
	next() ([]byte, error)
	close()
}

type tcpWire struct {
	c    net.Conn
	r    *bufio.Reader
	long []byte // assembles an object longer than r's buffer (a big member list)
	fd   int    // > 0: a poller read it from this duplicate, c is closed
}

func (w *tcpWire) write(b []byte) error { _, err := w.c.Write(b); return err }

func (w *tcpWire) next() ([]byte, error) {
	line, err := w.r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	w.long = append(w.long[:0], line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = w.r.ReadSlice('\n')
		w.long = append(w.long, line...)
	}
	return w.long, err
}

func (w *tcpWire) close() {
	_ = w.c.Close()
	if w.fd > 0 {
		_ = syscall.Close(w.fd)
	}
}

type wsWire struct {
	c   *websocket.Conn
	buf bytes.Buffer
}

func (w *wsWire) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, b)
}

func (w *wsWire) next() ([]byte, error) {
	_, r, err := w.c.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	w.buf.Reset()
	_, err = w.buf.ReadFrom(r)
	return w.buf.Bytes(), err
}

func (w *wsWire) close() { _ = w.c.CloseNow() }

// dial connects client i, over WebSocket if ws, from one of the loopback
// source addresses (so that many connections do not run out of ports).
func dial(ctx context.Context, cfg config, i int, ws bool) (wire, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if cfg.sources > 1 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%cfg.sources))}
	}
	if !ws {
		c, err := d.DialContext(ctx, "tcp", cfg.tcpAddrs[i%len(cfg.tcpAddrs)])
		if err != nil {
			return nil, err
		}
		return &tcpWire{c: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
	}
	wsURL := cfg.wsURLs[i%len(cfg.wsURLs)]
	if !cfg.wsLibrary {
		u, err := url.Parse(wsURL)
		if err != nil {
			return nil, err
		}
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, err
		}
		w, err := dialRawWS(ctx, c, wsURL)
		if err != nil {
			c.Close()
			return nil, err
		}
		return w, nil
	}
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: httpClient(d)})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return &wsWire{c: c}, nil
}

// login sends the login request and reads up to its reply.
func login(w wire, nick string, original bool) error {
	req := `{"type":"` + proto.TypeLogin + `","nickname":"` + nick + `","protocol":1}` + "\n"
	if original { // as the original client writes it: spaces, no newline
		req = `{"type": "` + proto.TypeLogin + `", "nickname": "` + nick + `"}`
	}
	if err := w.write([]byte(req)); err != nil {
		return fmt.Errorf("login %s: %w", nick, err)
	}
	for {
		obj, err := w.next()
		if err != nil {
			return fmt.Errorf("login %s: %w", nick, err)
		}
		if bytes.Contains(obj, []byte(`"status":"ok"`)) {
			return nil
		}
		if bytes.Contains(obj, []byte(`"status":"error"`)) {
			return fmt.Errorf("login %s refused: %s", nick, obj)
		}
	}
}

// payload is what a benchmark message carries: who sent it, its number in
// that sender's stream, and when (this process's clock), then padding.
func payload(dst []byte, sender, seq int, sent time.Time, size int) []byte {
	dst = strconv.AppendInt(dst, int64(sender), 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, sent.UnixNano(), 10)
	dst = append(dst, ':')
	for len(dst) < size {
		dst = append(dst, 'x')
	}
	return dst
}

var messageKey = []byte(`"message":"`)

// parsePayload finds a benchmark payload in a server object, without
// decoding the JSON: "sender:seq:nanos:".
func parsePayload(obj []byte) (sender, seq int, sent int64, ok bool) {
	i := bytes.Index(obj, messageKey)
	if i < 0 {
		return 0, 0, 0, false
	}
	rest := obj[i+len(messageKey):]
	var nums [3]int64
	for k := range nums {
		n, j := int64(0), 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			n = n*10 + int64(rest[j]-'0')
			j++
		}
		if j == 0 || j == len(rest) || rest[j] != ':' {
			return 0, 0, 0, false
		}
		nums[k] = n
		rest = rest[j+1:]
	}
	return int(nums[0]), int(nums[1]), nums[2], true
}
