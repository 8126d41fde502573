package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// newBrowser starts a headless Chromium for the test. Without one the test
// is skipped, except under CI=true, where it must run.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no Chromium found; .ci/run should have installed it")
		}
		t.Skip("no Chromium found (apt-get install chromium): skipping the browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	watching := make(chan struct{})
	t.Cleanup(func() {
		cancelTimeout()
		_ = chromedp.Cancel(ctx)
		cancelCtx()
		cancelAlloc()
		<-watching
	})
	// A script injected by a message would most likely call alert().
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		defer close(watching)
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			t.Errorf("page opened a dialog: %q (script injection?)", ev.Message)
		}
	}()
	return ctx
}

// messageXPath finds a rendered chat message whose text is exactly text.
func messageXPath(text string) string {
	return fmt.Sprintf(`//ol[@id="messages"]/li/span[@class="text" and text()=%q]`, text)
}

func TestBrowserChatsWithTerminal(t *testing.T) {
	m := startServer(t)
	ctx := newBrowser(t)
	term := dialTCP(t, m, "term")
	term.login("term")

	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 800), // phone width
		chromedp.Navigate("http://"+m.HTTPAddr()+"/"),
		chromedp.WaitVisible(chromedp.ID("nick")),
		chromedp.SendKeys(chromedp.ID("nick"), "web"),
		chromedp.Click(chromedp.ID("join")),
		chromedp.WaitVisible(chromedp.ID("text")),
		chromedp.WaitNotVisible(chromedp.ID("login")), // the form gives way to the room
	)
	if err != nil {
		t.Fatalf("log in from the page: %v", err)
	}
	term.await("the browser's join", func(x msg) bool { return x.str("message") == "web joined" })

	// Browser to terminal.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("text"), "hello from chromium"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.WaitVisible(chromedp.Search(messageXPath("hello from chromium"))), // its own line, in room order
	); err != nil {
		t.Fatalf("send from the page: %v", err)
	}
	if got := term.awaitMessage("hello from chromium"); got.str("sender_nickname") != "web" {
		t.Fatalf("terminal got %v", got)
	}

	// Terminal to browser, and markup shows as text.
	const evil = `<img src=x onerror=alert(1)>`
	term.say("hello browser")
	term.say(evil)
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.Search(messageXPath("hello browser"))),
		chromedp.WaitVisible(chromedp.Search(messageXPath(evil))),
	); err != nil {
		t.Fatalf("receive in the page: %v", err)
	}
	images, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#messages img").length`))
	if err != nil {
		t.Fatal(err)
	}
	members, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("member-count")))
	if err != nil {
		t.Fatal(err)
	}
	if images != 0 {
		t.Fatalf("a message was rendered as HTML: %d <img> elements", images)
	}
	if members != "2" {
		t.Fatalf("member count %q, want 2", members)
	}
	if path := os.Getenv("CHAT_SCREENSHOT"); path != "" { // for a person to look at
		if shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
			_ = os.WriteFile(path, shot, 0o644)
		}
	}
}

func TestBrowserReconnectsAfterServerRestart(t *testing.T) {
	first := NewMain(Config{TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	httpAddr := first.HTTPAddr()
	ctx := newBrowser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+httpAddr+"/"),
		chromedp.SendKeys(chromedp.ID("nick"), "phoenix"),
		chromedp.Click(chromedp.ID("join")),
		chromedp.WaitVisible(chromedp.ID("text")),
	); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	if err := first.Close(sctx); err != nil {
		t.Fatal(err)
	}

	// The same address again, as after a restart.
	second := startServer(t, func(c *Config) { c.HTTPAddr = httpAddr })
	term := dialTCP(t, second, "term")
	term.login("term")
	term.await("the page's automatic re-login", func(x msg) bool { return x.str("message") == "phoenix joined" })
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.Search(`//span[@id="status" and contains(text(), "connected as phoenix")]`)),
		chromedp.SendKeys(chromedp.ID("text"), "back again"),
		chromedp.Click(chromedp.ID("send")),
	); err != nil {
		t.Fatal(err)
	}
	term.awaitMessage("back again")
}

func TestBrowserPageFromAnotherOriginCannotOpenAWebSocket(t *testing.T) {
	m := startServer(t)
	ctx := newBrowser(t)
	// A page on another origin (another port is another origin).
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "<!doctype html><title>elsewhere</title>")
	}))
	defer other.Close()
	tryWS := fmt.Sprintf(`new Promise((resolve) => {
		const ws = new WebSocket("ws://%s/ws");
		ws.onopen = () => { ws.close(); resolve("open"); };
		ws.onerror = () => resolve("refused");
	})`, m.HTTPAddr())

	if err := chromedp.Do(ctx, chromedp.Navigate(other.URL)); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](tryWS, chromedp.EvalAwaitPromise))
	if err != nil || got != "refused" {
		t.Fatalf("from another origin: %q %v, want refused", got, err)
	}
	// The same script from the chat's own page connects: the check is the origin.
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+m.HTTPAddr()+"/")); err != nil {
		t.Fatal(err)
	}
	got, err = chromedp.Run(ctx, chromedp.Evaluate[string](tryWS, chromedp.EvalAwaitPromise))
	if err != nil || got != "open" {
		t.Fatalf("from the chat's own page: %q %v, want open", got, err)
	}
}
