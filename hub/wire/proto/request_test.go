package proto

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeRequest(t *testing.T) {
	bad := map[string]string{
		`[1,2]`:                         "not a JSON object",
		`"login"`:                       "not a JSON object",
		`{"type":"login"`:               "malformed JSON",
		"{\"type\":\"x\xff\"}":          "not valid UTF-8",
		`{"type":"login","nickname":5}`: `field "nickname" must be a string`,
		`{"message":"hi"}`:              `missing "type"`,
	}
	for in, want := range bad {
		_, err := DecodeRequest([]byte(in))
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeRequest(%q) = %v, want %q", in, err, want)
		}
	}
	req, err := DecodeRequest([]byte(`{"type": "broadcast", "sender_id": 1, "message": "\u4f60\u597d \ud83d\ude00"}`))
	if err != nil || req.Message != "你好 😀" {
		t.Fatalf("seed broadcast: %+v %v", req, err)
	}
	if err := req.CheckSender(1); err != nil {
		t.Errorf("own sender_id refused: %v", err)
	}
	for _, spoof := range []string{`2`, `0`, `-1`, `"1"`, `1.5`} {
		r := Request{SenderID: json.RawMessage(spoof)}
		if err := r.CheckSender(1); err == nil {
			t.Errorf("sender_id %s accepted for member 1", spoof)
		}
	}
	if err := (Request{SenderID: json.RawMessage("null")}).CheckSender(1); err != nil {
		t.Errorf("null sender_id refused: %v", err)
	}
}

// FuzzDecodeRequest checks that no input panics the decoder and that an
// accepted request is an object with a type.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"type": "login", "nickname": "\u5f20\u4e09"}`))
	f.Add([]byte(`{"type":"broadcast","sender_id":1,"message":"hi","protocol":1}`))
	f.Add([]byte(`{"type":"broadcast","sender_id":"1","message":5}`))
	f.Add([]byte("\xff{}"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, err := DecodeRequest(frame)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if req.Type == "" || !utf8.Valid(frame) {
			t.Fatalf("accepted %q as %+v", frame, req)
		}
		_ = req.CheckSender(1)
	})
}
