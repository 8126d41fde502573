// Package sockettest gives tests a real, connected pair of TCP sockets on
// loopback, for code that must be tested on a socket (raw reads and
// non-blocking writes) rather than on an in-memory pipe.
package sockettest

import (
	"net"
	"testing"
)

// Pair returns both ends of a TCP connection on 127.0.0.1, closed when the
// test ends.
func Pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
