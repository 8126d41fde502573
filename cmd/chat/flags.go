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
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: chat [flags]

Joins the chat room from a terminal. Commands:
  login NAME      log in (or use -nick)
  send MESSAGE    send a message; after login a plain line is sent too
  /who            list members
  /help           this help
  /quit           leave

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
