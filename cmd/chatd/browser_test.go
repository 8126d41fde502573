package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// tab is one browser tab, with helpers for the chat tab.
type tab struct {
	t   *testing.T
	ctx context.Context
}

func (p tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

func (p tab) login(addr, nick string) {
	p.t.Helper()
	p.do("log in as "+nick,
		chromedp.Navigate("http://"+addr+"/"),
		chromedp.SendKeys(chromedp.ID("nick"), nick),
		chromedp.Click(chromedp.ID("join")),
		chromedp.WaitVisible(chromedp.ID("text")),
	)
}

func (p tab) say(text string) {
	p.t.Helper()
	p.do("send "+text, chromedp.SendKeys(chromedp.ID("text"), text), chromedp.Click(chromedp.ID("send")))
}

func (p tab) open(key string) {
	p.t.Helper()
	p.do("open "+key, chromedp.Click(chromedp.Search(fmt.Sprintf(`//li[@data-key=%q]`, key))))
	p.waitFor("title of "+key, fmt.Sprintf(`//span[@id="title" and starts-with(text(), %q)]`, key))
}

// waitFor waits until the XPath matches a visible element.
func (p tab) waitFor(what, xpath string) {
	p.t.Helper()
	p.do("wait for "+what, chromedp.WaitVisible(chromedp.Search(xpath)))
}

func TestBrowserRoomsPresencePrivateHistoryAndMentions(t *testing.T) {
	m := startServer(t)
	annCtx := newBrowser(t)
	if err := chromedp.Do(annCtx); err != nil { // start the browser before a second context
		t.Fatal(err)
	}
	benCtx, cancelBen := chromedp.NewContext(annCtx, chromedp.WithNewBrowserContext())
	defer cancelBen()
	ann, ben := tab{t, annCtx}, tab{t, benCtx}
	ann.do("desktop size", chromedp.EmulateViewport(1100, 700))

	term := dialTCP(t, m, "term")
	term.login("term")
	term.send(`{"type":"join","room":"#Go"}`)
	term.await("joined #go", func(x msg) bool { return x.str("type") == "joined" && x.str("room") == "go" })
	term.say("lobby before") // in history for #lobby
	term.send(`{"type":"broadcast","room":"go","message":"go before"}`)
	term.awaitMessage("go before")

	ann.login(m.HTTPAddr(), "ann")
	ann.waitFor("lobby history", messageXPath("lobby before"))
	ann.do("join #go", chromedp.SendKeys(chromedp.ID("room-name"), "#go"), chromedp.Click(chromedp.Search(`//form[@id="join-room"]/button`)))
	ann.waitFor("#go with its history", `//li[contains(@class,"history")]/span[@class="text" and text()="go before"]`)
	ann.waitFor("two members in #go", `//ul[@id="member-list" and count(li)=2]`)

	ben.login(m.HTTPAddr(), "ben")
	ben.say("/join go")
	ann.waitFor("ben in #go's member list", `//ul[@id="member-list"]/li[text()="ben"]`)
	ann.waitFor("three members in #go", `//ul[@id="member-list" and count(li)=3]`)

	// Typing shows to others in the room.
	ben.do("type", chromedp.SendKeys(chromedp.ID("text"), "x"))
	ann.waitFor("typing indicator", `//p[@id="typing" and text()="ben is typing…"]`)
	if _, err := chromedp.Run(benCtx, chromedp.Evaluate[string](`document.getElementById("text").value = ""`)); err != nil {
		t.Fatal(err)
	}

	// Unread badge for a room that is not open; mention highlighting.
	ben.open("#lobby")
	term.send(`{"type":"broadcast","room":"go","message":"hey ann, and ben"}`)
	ann.waitFor("mention highlighted", `//li[contains(@class,"mention")]/span[@class="text" and text()="hey ann, and ben"]`)
	ben.waitFor("unread badge on #go", `//li[@data-key="#go"]/span[contains(@class,"badge") and text()="1"]`)
	ben.open("#go")
	ben.waitFor("the unread message", messageXPath("hey ann, and ben"))

	// A private message reaches only its target.
	ann.do("open a private conversation with ben", chromedp.Click(chromedp.Search(`//ul[@id="member-list"]/li[text()="ben"]`)))
	ann.say("just between us")
	ben.waitFor("a private conversation badge", `//ul[@id="dms"]/li[@data-key]/span[contains(@class,"badge")]`)
	ben.do("open it", chromedp.Click(chromedp.Search(`//ul[@id="dms"]/li`)))
	ben.waitFor("the private message", messageXPath("just between us"))
	term.say("marker")
	for x := term.next(); x.str("message") != "marker"; x = term.next() {
		if x.str("type") == "private" || strings.Contains(x.str("message"), "between us") {
			t.Fatalf("a third party got the private message: %v", x)
		}
	}

	// Nick changes show in member lists.
	ben.say("/nick benny")
	ann.open("#go")
	ann.waitFor("the new nickname", `//ul[@id="member-list"]/li[text()="benny"]`)
	ann.waitFor("the rename notice", `//li[contains(@class,"system")]/span[text()="ben is now benny"]`)

	// After a reload, ann is back in #go with its history.
	ann.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("join")), chromedp.Click(chromedp.ID("join")), chromedp.WaitVisible(chromedp.ID("text")))
	ann.waitFor("#go rejoined", `//ul[@id="rooms"]/li[@data-key="#go"]`)
	ann.open("#go")
	ann.waitFor("history after reload", `//li[contains(@class,"history")]/span[@class="text" and text()="hey ann, and ben"]`)
	if path := os.Getenv("CHAT_SCREENSHOT"); path != "" {
		if shot, err := chromedp.Run(annCtx, chromedp.CaptureScreenshot()); err == nil {
			_ = os.WriteFile(strings.TrimSuffix(path, ".png")+"-rooms.png", shot, 0o644)
		}
	}
}

// TestBrowserPrivateConversationFollowsTheMember: a private conversation
// is with a member, not a nickname (issue 15). When bob leaves and someone
// else logs in as "bob", the page says bob has left, and what is typed in
// the old conversation reaches nobody.
func TestBrowserPrivateConversationFollowsTheMember(t *testing.T) {
	m := startServer(t)
	ann := tab{t, newBrowser(t)}
	ann.do("desktop size", chromedp.EmulateViewport(1100, 700))
	bob := dialTCP(t, m, "bob")
	bob.login("bob")
	ann.login(m.HTTPAddr(), "ann")
	ann.do("open a private conversation with bob", chromedp.Click(chromedp.Search(`//ul[@id="member-list"]/li[text()="bob"]`)))
	ann.say("for the first bob")
	bob.await("the private message", func(x msg) bool { return x.str("type") == "private" && x.str("message") == "for the first bob" })

	bob.close()
	ann.waitFor("bob has left, in the conversation", `//li[contains(@class,"system")]/span[starts-with(text(),"bob has left the chat")]`)
	impostor := dialTCP(t, m, "impostor")
	impostor.login("bob")
	ann.say("are you still there?")
	ann.waitFor("not sent", `//li[contains(@class,"error")]/span[text()="bob has left: not sent"]`)
	impostor.say("marker")
	for x := impostor.next(); x.str("message") != "marker"; x = impostor.next() {
		if x.str("type") == "private" {
			t.Fatalf("the new bob got the old conversation's message: %v", x)
		}
	}
}

// TestBrowserResumesAcrossRestartAndSearches: chatd (durable) restarts while
// a browser is in the lobby and someone keeps talking; the page reconnects
// by itself, says how many messages it missed, and shows every message
// once, in order. Then a search finds one and shows it in context.
func TestBrowserResumesAcrossRestartAndSearches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	first := NewMain(Config{TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataPath: path})
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	httpAddr := first.HTTPAddr()
	page := tab{t, newBrowser(t)}
	page.do("desktop size", chromedp.EmulateViewport(1100, 700))
	page.login(httpAddr, "phoenix")
	term := dialTCP(t, first, "term")
	term.login("term")
	term.say("m1")
	term.say("m2")
	page.waitFor("m2", messageXPath("m2"))
	closeNow(t, first)

	second := startServer(t, func(c *Config) { c.HTTPAddr, c.DataPath = httpAddr, path })
	term = dialTCP(t, second, "term again")
	term.login("term")
	term.say("m3")
	term.say("m4")
	term.awaitMessage("m4")
	page.waitFor("the reconnection note", `//li[contains(@class,"reconnected")]/span[contains(text(), "missed message")]`)
	term.say("m5")
	page.waitFor("m5", messageXPath("m5"))
	shown, err := chromedp.Run(page.ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#messages li .text")].map((e) => e.textContent).filter((t) => /^m\d$/.test(t))`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(shown, ",") != "m1,m2,m3,m4,m5" {
		t.Fatalf("the page shows %q, want each of m1..m5 once, in order", shown)
	}

	// Search, and the result in context.
	page.do("search", chromedp.SendKeys(chromedp.ID("search-text"), "m3\n"))
	page.waitFor("one result", `//ol[@id="results-list" and count(li)=1]/li[contains(@class,"hit")]/span[text()="m3"]`)
	page.do("open it in context", chromedp.Click(chromedp.Search(`//ol[@id="results-list"]/li[contains(@class,"hit")]`)))
	page.waitFor("the result marked in its context", `//ol[@id="results-list"]/li[contains(@class,"target")]/span[text()="m3"]`)
	page.waitFor("and what came before it", `//ol[@id="results-list"]/li/span[text()="m2"]`)
}
