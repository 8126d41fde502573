// Command chat joins the chat room from a terminal over TCP.
//
//	chat [-addr 127.0.0.1:8000] [-nick NAME]
//
// Commands are those of the original Python client, "login NAME" and
// "send MESSAGE"; after login any plain line is sent as a message too.
// "/who" lists members, "/help" shows help and "/quit" leaves.
//
// When standard input is a terminal, chat edits the line being typed in
// place and redraws it around incoming messages. Otherwise it runs as a
// script: each line is a command, logins are waited for, and at end of input
// chat waits until the server has acknowledged every message it sent, then
// exits 0, or 1 if anything was refused or the connection was lost:
//
//	printf 'login bot\nsend hi\n' | chat
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is chat's whole life, with its streams passed in so tests can drive it
// through pipes. It returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	var ui ui
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tui, restore, err := newTerminalUI(f, stdout)
		if err != nil {
			fmt.Fprintln(stderr, "chat:", err)
			return 1
		}
		defer restore()
		ui = tui
	} else {
		ui = newScriptUI(stdin, stdout, stderr)
	}
	return newApp(cfg, ui).run(ctx)
}
