package main

import (
	"bufio"
	"chatroom/hub/wire/proto"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// ui is where chat reads commands and shows the room.
type ui interface {
	// Lines delivers input lines; it is closed at end of input.
	Lines() <-chan string
	// Show prints room output (messages, joins, notices).
	Show(line string)
	// Problem prints an error or a hint.
	Problem(line string)
	// Interactive reports whether a person is typing.
	Interactive() bool
	// SetRoom shows which room plain lines go to.
	SetRoom(room string)
}

// scriptUI reads commands from a pipe or file and writes plain lines.
type scriptUI struct {
	lines  chan string
	out    io.Writer
	errOut io.Writer
}

func newScriptUI(in io.Reader, out, errOut io.Writer) *scriptUI {
	u := &scriptUI{lines: make(chan string), out: out, errOut: errOut}
	go func() {
		defer close(u.lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			u.lines <- sc.Text()
		}
	}()
	return u
}

func (u *scriptUI) Lines() <-chan string { return u.lines }
func (u *scriptUI) Show(line string)     { fmt.Fprintln(u.out, line) }
func (u *scriptUI) Problem(line string)  { fmt.Fprintln(u.errOut, line) }
func (u *scriptUI) Interactive() bool    { return false }
func (u *scriptUI) SetRoom(string)       {}

// terminalUI edits the input line in place (history, cursor keys) and
// redraws it below every incoming message, so typing is never garbled.
type terminalUI struct {
	t     *term.Terminal
	lines chan string
}

func newTerminalUI(in *os.File, out io.Writer) (*terminalUI, func(), error) {
	fd := int(in.Fd())
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("terminal raw mode: %w", err)
	}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, out}, "> ")
	resize := func() {
		if w, h, err := term.GetSize(fd); err == nil {
			_ = t.SetSize(w, h)
		}
	}
	resize()
	stopResizes := onResize(resize)
	u := &terminalUI{t: t, lines: make(chan string)}
	go func() {
		defer close(u.lines)
		for {
			line, err := t.ReadLine()
			if err != nil { // io.EOF on Ctrl-D or Ctrl-C
				return
			}
			u.lines <- line
		}
	}()
	restore := func() {
		stopResizes()
		_ = term.Restore(fd, state)
		fmt.Fprintln(out)
	}
	return u, restore, nil
}

func (u *terminalUI) Lines() <-chan string { return u.lines }
func (u *terminalUI) Show(line string)     { fmt.Fprintln(u.t, line) }
func (u *terminalUI) Problem(line string)  { fmt.Fprintln(u.t, "! "+line) }
func (u *terminalUI) Interactive() bool    { return true }
func (u *terminalUI) SetRoom(room string)  { u.t.SetPrompt("#" + room + "> ") }

// printable makes text from the network safe for a terminal.
func printable(s string) string { return proto.Printable(s) }
