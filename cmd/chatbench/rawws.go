package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// rawWSWire is a WebSocket client written for the load tool: after the
// handshake it reads the server's frames itself, so a poller can read many
// WebSocket clients as cheaply as TCP ones (the library's client costs a
// Reader, a context and a lock per message, and a goroutine per client).
// It speaks just what chatd sends: unfragmented, unmasked text frames, pings
// and the close frame. -ws-library uses the library's client instead.
type rawWSWire struct {
	tcpWire
	frame []byte // next's result
	out   []byte // write's frame
}

// wsGUID is RFC 6455's key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dialRawWS connects c (already dialled to the server) as a WebSocket client
// of rawURL.
func dialRawWS(ctx context.Context, c net.Conn, rawURL string) (*rawWSWire, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(deadline)
		defer c.SetDeadline(time.Time{})
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	r := bufio.NewReaderSize(c, 16<<10)
	status, err := r.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101") {
		return nil, fmt.Errorf("websocket handshake: %s", strings.TrimSpace(status))
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	wantAccept := base64.StdEncoding.EncodeToString(sum[:])
	accepted := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("websocket handshake: %w", err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Sec-WebSocket-Accept") {
			accepted = strings.TrimSpace(value) == wantAccept
		}
	}
	if !accepted {
		return nil, errors.New("websocket handshake: bad Sec-WebSocket-Accept")
	}
	return &rawWSWire{tcpWire: tcpWire{c: c, r: r}}, nil
}

// write sends b as one masked text frame (a client must mask).
func (w *rawWSWire) write(b []byte) error {
	w.out = appendClientFrame(w.out[:0], wsOpText, b)
	_, err := w.c.Write(w.out)
	return err
}

// next returns the next text message's payload, answering pings on the way.
func (w *rawWSWire) next() ([]byte, error) {
	for {
		var hdr [14]byte
		if _, err := io.ReadFull(w.r, hdr[:2]); err != nil {
			return nil, err
		}
		n, extra := int(hdr[1]&0x7f), 0
		switch n {
		case 126:
			extra = 2
		case 127:
			extra = 8
		}
		if _, err := io.ReadFull(w.r, hdr[2:2+extra]); err != nil {
			return nil, err
		}
		switch extra {
		case 2:
			n = int(binary.BigEndian.Uint16(hdr[2:]))
		case 8:
			n = int(binary.BigEndian.Uint64(hdr[2:]))
		}
		if cap(w.frame) < n {
			w.frame = make([]byte, n)
		}
		w.frame = w.frame[:n]
		if _, err := io.ReadFull(w.r, w.frame); err != nil {
			return nil, err
		}
		switch hdr[0] & 0x0f {
		case wsOpText:
			return w.frame, nil
		case wsOpPing:
			if _, err := w.c.Write(appendClientFrame(nil, wsOpPong, w.frame)); err != nil {
				return nil, err
			}
		case wsOpClose:
			return nil, io.EOF
		}
	}
}

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	wsOpText  = 0x1
	wsOpClose = 0x8
	wsOpPing  = 0x9
	wsOpPong  = 0xa
)

// appendClientFrame appends a final, masked frame carrying payload.
func appendClientFrame(dst []byte, op byte, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	dst = append(dst, mask[:]...)
	for i, b := range payload {
		dst = append(dst, b^mask[i&3])
	}
	return dst
}

// parseServerFrame parses one frame at the start of b, as the server sends
// them (unmasked), and reports its opcode, payload and length; ok is false
// when b does not yet hold a whole frame.
func parseServerFrame(b []byte) (op byte, payload []byte, size int, ok bool) {
	if len(b) < 2 {
		return 0, nil, 0, false
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, false
		}
		n, h = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, false
		}
		n, h = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	if len(b) < h+n {
		return 0, nil, 0, false
	}
	return b[0] & 0x0f, b[h : h+n], h + n, true
}
