//go:build !linux

package main

import "errors"

// poller is Linux-only (epoll); elsewhere every client has a reader goroutine.
type poller struct{}

func newPollers(int) ([]*poller, error) { return nil, errors.ErrUnsupported }

func stopPollers([]*poller) {}

func (*poller) add(*client, *tcpWire) error { return errors.ErrUnsupported }
