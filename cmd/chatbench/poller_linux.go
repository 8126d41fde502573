//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
)

// poller reads many TCP clients from one goroutine with epoll: one
// epoll_wait for every client that has input, then one read each. A
// goroutine per client costs a wakeup and two reads per delivery (the second
// finding nothing) when messages come one at a time, which on a shared box
// takes CPU from the server being measured.
type poller struct {
	epfd int
	buf  []byte // the poller's reads land here

	mu     sync.Mutex // guards polled; held only to register and look up
	polled map[int32]*polledConn

	stop atomic.Bool
	done chan struct{}
}

// polledConn is one client under a poller.
type polledConn struct {
	c       *client
	fd      int
	partial []byte // the start of an object that a read cut short
}

// pollWaitMS bounds one epoll_wait, so that the poller notices stop.
const pollWaitMS = 20

// newPollers starts n pollers.
func newPollers(n int) ([]*poller, error) {
	ps := make([]*poller, 0, n)
	for range n {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			stopPollers(ps)
			return nil, fmt.Errorf("epoll: %w", err)
		}
		p := &poller{epfd: epfd, buf: make([]byte, 256<<10), polled: make(map[int32]*polledConn), done: make(chan struct{})}
		go p.run()
		ps = append(ps, p)
	}
	return ps, nil
}

// stopPollers stops ps and waits for them: call it before closing the
// connections they read, so that no poller reads a closed (or reused) fd.
func stopPollers(ps []*poller) {
	for _, p := range ps {
		p.stop.Store(true)
	}
	for _, p := range ps {
		<-p.done
		_ = syscall.Close(p.epfd)
	}
}

// add hands c (a TCP client that has logged in) to the poller, first
// handling what its login left buffered.
func (p *poller) add(c *client, w *tcpWire) error {
	raw, err := w.c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	pc := &polledConn{c: c, fd: -1}
	if err := raw.Control(func(fd uintptr) { pc.fd = int(fd) }); err != nil {
		return err
	}
	if n := w.r.Buffered(); n > 0 {
		rest, _ := w.r.Peek(n)
		pc.consume(rest)
	}
	p.mu.Lock()
	p.polled[int32(pc.fd)] = pc
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(pc.fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, pc.fd, &ev); err != nil {
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 512)
	for !p.stop.Load() {
		n, err := syscall.EpollWait(p.epfd, events, pollWaitMS)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for i := range n {
			p.mu.Lock()
			pc := p.polled[events[i].Fd]
			p.mu.Unlock()
			if pc != nil {
				p.read(pc)
			}
		}
	}
}

// read reads once (the epoll is level-triggered: what is left is reported
// again) and handles every whole object read.
func (p *poller) read(pc *polledConn) {
	n, err := syscall.Read(pc.fd, p.buf)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		return
	}
	if n <= 0 { // closed or failed: stop watching it
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, pc.fd, nil)
		p.mu.Lock()
		delete(p.polled, int32(pc.fd))
		p.mu.Unlock()
		return
	}
	pc.consume(p.buf[:n])
}

// consume handles the objects (one per line) in data, keeping an unfinished
// one for the next read.
func (pc *polledConn) consume(data []byte) {
	if len(pc.partial) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			pc.partial = append(pc.partial, data...)
			return
		}
		pc.partial = append(pc.partial, data[:i+1]...)
		pc.c.handle(pc.partial)
		pc.partial = pc.partial[:0]
		data = data[i+1:]
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			pc.partial = append(pc.partial, data...)
			return
		}
		pc.c.handle(data[:i+1])
		data = data[i+1:]
	}
}
