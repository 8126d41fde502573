package session

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"chatroom/hub/session/sockettest"
)

// countingWriter records each write.
type countingWriter struct {
	bytes.Buffer
	writes int
	failAt int // fail the write with this number (from 1); 0: never
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes == w.failAt {
		return 0, errors.New("broken pipe")
	}
	return w.Buffer.Write(p)
}

func TestWriteBatch(t *testing.T) {
	header := func(dst []byte, n int) []byte { return fmt.Appendf(dst, "<%d>", n) }
	big := bytes.Repeat([]byte("b"), batchBufSize+10)
	cases := []struct {
		name       string
		frames     [][]byte
		header     func([]byte, int) []byte
		wantWrites int
	}{
		{"none", nil, nil, 0},
		{"small ones coalesce", [][]byte{[]byte("a\n"), []byte("bc\n"), []byte("d\n")}, nil, 1},
		{"with headers", [][]byte{[]byte("x"), []byte("yz")}, header, 1},
		{"fills the buffer", repeatFrames(1000, 100), nil, 4}, // 100000 bytes in 32 KiB writes
		{"a frame bigger than the buffer goes alone", [][]byte{[]byte("a"), big, []byte("c")}, header, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w countingWriter
			if err := WriteBatch(&w, c.frames, c.header); err != nil {
				t.Fatal(err)
			}
			var want []byte
			for _, f := range c.frames {
				if c.header != nil {
					want = c.header(want, len(f))
				}
				want = append(want, f...)
			}
			if !bytes.Equal(w.Bytes(), want) {
				t.Errorf("wrote %d bytes, want %d in order", w.Len(), len(want))
			}
			if w.writes != c.wantWrites {
				t.Errorf("%d writes, want %d", w.writes, c.wantWrites)
			}
		})
	}
}

func TestWriteBatchError(t *testing.T) {
	w := countingWriter{failAt: 2}
	err := WriteBatch(&w, repeatFrames(1000, 100), nil)
	if err == nil || w.writes != 2 {
		t.Fatalf("err %v after %d writes; want the second write's error, and no more writes", err, w.writes)
	}
}

func repeatFrames(n, size int) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{byte('a' + i%26)}, size)
	}
	return frames
}

// TestTryWriteBatchOnAFullSocket writes to a real socket whose peer is not
// reading until it takes no more: what TryWriteBatch returns as not taken,
// written afterwards, completes the stream exactly.
func TestTryWriteBatchOnAFullSocket(t *testing.T) {
	client, server := sockettest.Pair(t)
	raw, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}

	header := func(dst []byte, n int) []byte { return fmt.Appendf(dst, "<%d>", n) }
	var want []byte
	var rest []byte
	for i := 0; rest == nil; i++ {
		if i == 10000 {
			t.Fatal("the socket never filled up")
		}
		frames := repeatFrames(64, 1000)
		for _, f := range frames {
			want = append(header(want, len(f)), f...)
		}
		if rest, err = TryWriteBatch(raw, frames, header); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	if _, err := server.Write(rest); err != nil {
		t.Fatal(err)
	}
	server.Close()
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatalf("peer read %d bytes, want the %d written, in order", len(b), len(want))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("peer did not read everything")
	}
}
