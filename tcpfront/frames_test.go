package tcpfront

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"chatroom/hub/session/sockettest"
)

// chunkReader returns its data in reads of the given sizes, cycling.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	n = max(1, min(n, len(p), len(c.data)))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func readAll(r io.Reader, limit int) ([]string, error) {
	fr := newFrameReader(r, limit)
	var frames []string
	for {
		f, err := fr.Next()
		if err != nil {
			return frames, err
		}
		frames = append(frames, string(f))
	}
}

func TestFrameReaderSplitsTheOriginalClientsStream(t *testing.T) {
	login := `{"type": "login", "nickname": "\u5f20\u4e09"}`
	msg := `{"type": "broadcast", "sender_id": 1, "message": "a } { \" \\ b"}`
	stream := login + msg + "\n  " + msg + "\r\n" + `{"nested":{"a":[1,{"b":"}"}]}}` + "not json\n" + msg
	want := []string{login, msg, msg, `{"nested":{"a":[1,{"b":"}"}]}}`, "not json\n", msg}
	for _, sizes := range [][]int{{1}, {2, 3}, {7}, {len(stream)}, {40, 1, 13}} {
		got, err := readAll(&chunkReader{data: []byte(stream), sizes: sizes}, 1024)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("sizes %v: err %v", sizes, err)
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Fatalf("sizes %v:\n got %q\nwant %q", sizes, got, want)
		}
	}
}

func TestFrameReaderBoundsMemory(t *testing.T) {
	const limit = 1024
	for name, r := range map[string]io.Reader{
		"endless object": io.MultiReader(strings.NewReader(`{"message":"`), iotest.OneByteReader(neverEnding('x'))),
		"endless line":   neverEnding('x'),
		"endless string": io.MultiReader(strings.NewReader(`{"a":"\\`), neverEnding('"')),
	} {
		fr := newFrameReader(r, limit)
		_, err := fr.Next()
		if !errors.Is(err, errFrameTooLarge) {
			t.Errorf("%s: err = %v, want errFrameTooLarge", name, err)
		}
		if cap(fr.buf) > limit+512 {
			t.Errorf("%s: buffer grew to %d bytes for a %d-byte limit", name, cap(fr.buf), limit)
		}
	}
}

// neverEnding is an endless stream of one byte.
type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// FuzzFrameReader checks that framing never panics, never returns more than
// the limit, and does not depend on how the stream was split into reads.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte(`{"type": "login", "nickname": "a"}{"type":"broadcast","message":"}"}`), uint8(3))
	f.Add([]byte("junk\n{\"a\":\"\\\"}\"}\n"), uint8(1))
	f.Add([]byte(`{{{{]]]]}}}}"`), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		const limit = 256
		whole, errWhole := readAll(&chunkReader{data: data, sizes: []int{len(data) + 1}}, limit)
		split1, errSplit := readAll(&chunkReader{data: data, sizes: []int{int(split%17) + 1}}, limit)
		if fmt.Sprint(whole) != fmt.Sprint(split1) || (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("framing depends on read sizes:\n%q %v\n%q %v", whole, errWhole, split1, errSplit)
		}
		for _, fr := range whole {
			if len(fr) > limit {
				t.Fatalf("frame of %d bytes over limit %d", len(fr), limit)
			}
		}
	})
}

// TestFrameReaderOnASocket reads frames from a real TCP connection, where the
// reader waits for input holding no buffer and reads into pooled ones:
// objects split over writes, several in one write, one larger than a pooled
// buffer, then the peer's close.
func TestFrameReaderOnASocket(t *testing.T) {
	client, server := sockettest.Pair(t)

	big := `{"message":"` + strings.Repeat("x", 3*readBufSize) + `"}`
	steps := []struct {
		write string
		want  []string // the frames the write completes
	}{
		{`{"a":`, nil},
		{`1}{"b":2}` + "\n" + `{"c"`, []string{`{"a":1}`, `{"b":2}`}},
		{`:"}"}`, []string{`{"c":"}"}`}},
		{big, []string{big}},
		{`{"d":4}` + "\r\n", []string{`{"d":4}`}}, // the separator is used up too
	}
	fr := newFrameReader(server, 64<<10)
	if fr.raw == nil {
		t.Fatal("a TCP connection should be read through its raw connection")
	}
	for i, step := range steps {
		if _, err := client.Write([]byte(step.write)); err != nil {
			t.Fatal(err)
		}
		for _, want := range step.want {
			f, err := fr.Next()
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			if string(f) != want {
				t.Fatalf("write %d: got %.40q, want %.40q", i, f, want)
			}
		}
	}
	fr.release()
	if fr.buf != nil || fr.pooled != nil {
		t.Fatalf("an idle reader holds a %d-byte buffer", cap(fr.buf))
	}
	client.Close()
	if _, err := fr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer closed: %v, want EOF", err)
	}
}
