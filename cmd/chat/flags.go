package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// config is what chat is started with.
type config struct {
	addr        string
	nick        string
	dialTimeout time.Duration
	ackTimeout  time.Duration
	// reconnectFor is how long to keep trying to reconnect after losing
	// the server (0: do not).
	reconnectFor time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	defAddr := "127.0.0.1:8000"
	if v := os.Getenv("CHAT_ADDR"); v != "" {
		defAddr = v
	}
	fs.StringVar(&cfg.addr, "addr", defAddr, "chatd TCP address (env CHAT_ADDR)")
	fs.StringVar(&cfg.nick, "nick", "", "log in with this nickname at start")
	fs.DurationVar(&cfg.dialTimeout, "dial-timeout", 5*time.Second, "how long to try connecting")
	fs.DurationVar(&cfg.ackTimeout, "wait", 10*time.Second, "script mode: how long to wait at end of input for the server to acknowledge what was sent")
	fs.DurationVar(&cfg.reconnectFor, "reconnect", time.Minute, "after losing the server, how long to keep trying to reconnect, resuming every room where it left off (0: exit at once)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: chat [flags]

Joins the chat from a terminal. Commands:
  login NAME      log in (or use -nick)
  send MESSAGE    send a message; after login a plain line is sent too
  /join ROOM      join a room (or switch to it) and send plain lines there
  /switch ROOM    send plain lines to a room you are in
  /leave [ROOM]   leave the current room (or ROOM)
  /rooms          list rooms
  /who            list the current room's members
  /msg NICK TEXT  private message
  /nick NAME      change your nickname
  /search TEXT    find messages of the current room containing TEXT
  /help           this help
  /quit           leave (Ctrl-D too)

If the server goes away, chat reconnects and resumes every room where it
left off (see -reconnect).

Flags:
`)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments: %q", fs.Args())
		fmt.Fprintln(stderr, "chat:", err)
	}
	return cfg, err
}
