//go:build !unix

package main

// onResize does nothing where there is no SIGWINCH (Windows): the line
// editor keeps the size it read at start.
func onResize(func()) (stop func()) { return func() {} }
