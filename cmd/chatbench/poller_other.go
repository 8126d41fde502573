//go:build !linux

package main

import (
	"errors"
	"time"
)

// poller is Linux-only (epoll); elsewhere every client has a reader goroutine.
type poller struct{}

func newPollers(int, time.Duration, bool) ([]*poller, error) { return nil, errors.ErrUnsupported }

func stopPollers([]*poller) {}

func (*poller) add(*client, *tcpWire, bool, bool) error { return errors.ErrUnsupported }
