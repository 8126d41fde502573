//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// onResize calls resize whenever the terminal changes size (SIGWINCH)
// until the returned stop is called.
func onResize(resize func()) (stop func()) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			resize()
		}
	}()
	return func() { signal.Stop(winch); close(winch) }
}
