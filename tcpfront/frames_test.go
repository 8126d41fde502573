package tcpfront

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
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
