package admission

import (
	"errors"
	"testing"
)

func TestLimits(t *testing.T) {
	c := New(Options{MaxConns: 3, MaxConnsPerIP: 2, ConnRatePerIP: -1})
	r1, err := c.Admit("tcp", "10.0.0.1:1000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admit("ws", "10.0.0.1:1001"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admit("tcp", "[::ffff:10.0.0.1]:1002"); !errors.Is(err, ErrTooManyConnsPerIP) {
		t.Fatalf("third from one IP (IPv4-mapped): %v", err)
	}
	if _, err := c.Admit("tcp", "10.0.0.2:1000"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admit("tcp", "10.0.0.3:1000"); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("fourth overall: %v", err)
	}
	r1()
	r1() // a second release is a no-op
	if c.Len() != 2 {
		t.Fatalf("Len = %d after a release, want 2", c.Len())
	}
	if _, err := c.Admit("tcp", "10.0.0.3:1000"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

func TestConnectionRate(t *testing.T) {
	c := New(Options{ConnRatePerIP: 0.001, ConnBurst: 2})
	for range 2 {
		if _, err := c.Admit("tcp", "10.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Admit("tcp", "10.0.0.1:1"); !errors.Is(err, ErrConnRate) {
		t.Fatalf("third rapid connection: %v", err)
	}
	if _, err := c.Admit("tcp", "10.0.0.9:1"); err != nil {
		t.Fatalf("another address is not affected: %v", err)
	}
}
