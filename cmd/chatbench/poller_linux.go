//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// poller reads many clients (TCP or WebSocket) from one goroutine with epoll: one
// epoll_wait for every client that has input, then one read each. A
// goroutine per client costs a wakeup and two reads per delivery (the second
// finding nothing) when messages come one at a time, which on a shared box
// takes CPU from the server being measured.
type poller struct {
	epfd int
	buf  []byte // the poller's reads land here
	hist histogram

	mu     sync.Mutex // guards polled and added; held only to register and look up
	polled map[int32]*polledConn
	added  []*polledConn // new clients whose login left input to handle

	interval    time.Duration // see newPollers
	delayedAcks bool          // see polledConn.delayAcks

	stop atomic.Bool
	done chan struct{}
}

// polledConn is one client under a poller.
type polledConn struct {
	c       *client
	fd      int
	ws      bool   // WebSocket frames rather than lines
	partial []byte // the start of an object that a read cut short
}

// pollWaitMS bounds one epoll_wait, so that the poller notices stop.
const pollWaitMS = 20

// newPollers starts n pollers. With an interval, a poller that finds
// nothing to read sleeps that long and then looks again, rather than
// blocking in epoll_wait: a reader asleep in epoll_wait is woken by each
// write that reaches it, a cost to both sides that a server's writes to
// clients on other machines never pay; sleeping, it wakes at most once per
// interval. It adds at most interval to the latencies measured.
func newPollers(n int, interval time.Duration, delayedAcks bool) ([]*poller, error) {
	ps := make([]*poller, 0, n)
	for range n {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			stopPollers(ps)
			return nil, fmt.Errorf("epoll: %w", err)
		}
		p := &poller{epfd: epfd, buf: make([]byte, 256<<10), polled: make(map[int32]*polledConn), interval: interval, delayedAcks: delayedAcks, done: make(chan struct{})}
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
// handling what its login left buffered. With detach, the poller takes the
// socket out of the Go runtime's own poller (it keeps a duplicate of the fd
// and closes the net.Conn): otherwise every delivery would also wake the
// runtime's epoll_wait, for nothing, at the server's expense. A detached
// client can no longer write.
func (p *poller) add(c *client, w *tcpWire, detach, ws bool) error {
	raw, err := w.c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	pc := &polledConn{c: c, fd: -1, ws: ws}
	var dupErr error
	err = raw.Control(func(fd uintptr) {
		if !detach {
			pc.fd = int(fd)
			return
		}
		syscall.ForkLock.RLock()
		pc.fd, dupErr = syscall.Dup(int(fd))
		if dupErr == nil {
			syscall.CloseOnExec(pc.fd)
		}
		syscall.ForkLock.RUnlock()
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if detach {
		w.fd = pc.fd
		_ = w.c.Close() // leaves the runtime's poller; the duplicate keeps the socket open
	}
	if p.delayedAcks {
		pc.delayAcks()
	}
	c.hist = &p.hist
	// What the login left buffered is the poller's to handle (its clients
	// share its histogram): it starts as the unfinished input.
	if n := w.r.Buffered(); n > 0 {
		rest, _ := w.r.Peek(n)
		pc.partial = append(pc.partial, rest...)
	}
	p.mu.Lock()
	p.polled[int32(pc.fd)] = pc
	if len(pc.partial) > 0 {
		p.added = append(p.added, pc)
	}
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
	wait := pollWaitMS
	if p.interval > 0 {
		wait = 0
	}
	for !p.stop.Load() {
		p.mu.Lock()
		added := p.added
		p.added = nil
		p.mu.Unlock()
		for _, pc := range added {
			pc.consume(nil)
		}
		n, err := syscall.EpollWait(p.epfd, events, wait)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		if n == 0 && p.interval > 0 {
			time.Sleep(p.interval)
			continue
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
	if p.delayedAcks {
		pc.delayAcks()
	}
}

// delayAcks turns quick acknowledgements off, which the kernel turns back on
// from time to time, so it is done after every read. A client that only
// receives does not need to acknowledge each push at once (the server is not
// waiting on it); and on one box, each acknowledgement's transmission and its
// processing on the server's socket are billed to the load tool, which then
// spends half its CPU acknowledging.
func (pc *polledConn) delayAcks() {
	_ = syscall.SetsockoptInt(pc.fd, syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
}

// consume handles the objects (one per line, or one per WebSocket frame) in
// the unfinished input and then data, keeping what is still unfinished.
func (pc *polledConn) consume(data []byte) {
	buf := data
	if len(pc.partial) > 0 {
		pc.partial = append(pc.partial, data...)
		buf = pc.partial
	}
	for {
		var obj []byte
		var size int
		if pc.ws {
			op, payload, n, ok := parseServerFrame(buf)
			if !ok {
				break
			}
			switch op {
			case wsOpText:
				obj = payload
			case wsOpPing:
				_, _ = syscall.Write(pc.fd, appendClientFrame(nil, wsOpPong, payload))
			}
			size = n
		} else {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			obj, size = buf[:i+1], i+1
		}
		if obj != nil {
			pc.c.handle(obj)
		}
		buf = buf[size:]
	}
	pc.partial = append(pc.partial[:0], buf...) // may overlap: append copies like memmove
}
