// Package wire is the chat's JSON protocol: decoding client requests and
// encoding hub events in the two wire shapes a client can receive.
//
//   - Original shape: what the Python client of the seed tutorial can parse.
//     Every server push is {"sender_id","sender_nickname","message"} (or the
//     login reply {"status","id"}), one object per frame and every frame under
//     1024 bytes, because that client parses each recv(1024) as exactly one
//     object. Longer messages are split into several pushes.
//   - Extended shape (protocol 1): the same keys plus "type", "seq" and
//     "time", structured join/leave events, errors and member lists.
//
// Frames are complete JSON objects terminated by '\n'. Framing on the socket
// (lines on TCP, messages on WebSocket) is the fronts' business.
package wire
