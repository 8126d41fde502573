// Package proto is the chat protocol's vocabulary, for the server and for
// clients alike: the request and event type names, the request object
// (decoded and checked by the server, encoded by Go clients such as
// cmd/chat), and Message, a loose decoding of anything the server sends.
// It imports nothing of the server, so a client that uses it carries no
// server code. How events are encoded is hub/wire's business; the contract
// itself is in README, "Wire protocol".
package proto
