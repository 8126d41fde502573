package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// seedClient is the seed tutorial's own Python client, run as a process and
// driven through its stdin, as a person would type into it.
type seedClient struct {
	t     *testing.T
	stdin io.Writer
	lines chan string
}

func startSeedClient(t *testing.T, m *Main) *seedClient {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is needed to run the seed client under CI")
		}
		t.Skip("python3 not found: skipping the seed client test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, python, "-u", "testdata/seed_client.py", m.TCPAddr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &seedClient{t: t, stdin: stdin, lines: make(chan string, 1024)}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			default: // the client's error loop after a close can flood; drop
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-readerDone
		_ = cmd.Wait()
	})
	return c
}

func (c *seedClient) typeLine(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

// await waits for an output line containing want and fails on the seed
// client's parse-error line: every push must be one whole object per recv.
func (c *seedClient) await(want string) {
	c.t.Helper()
	deadline := time.After(waitTime)
	for {
		select {
		case line := <-c.lines:
			if strings.Contains(line, "无法从服务器获取数据") {
				c.t.Fatalf("seed client could not parse what the server sent: %q", line)
			}
			if strings.Contains(line, want) {
				return
			}
		case <-deadline:
			c.t.Fatalf("seed client never printed %q", want)
		}
	}
}

func TestSeedPythonClientWorksUnchanged(t *testing.T) {
	m := startServer(t)
	py := startSeedClient(t, m)
	py.await("[Welcome]")
	py.typeLine("login 张三")
	py.await("成功登录到聊天室")

	ext := dialTCP(t, m, "ext")
	ext.login("ext")
	py.await(fmt.Sprintf("[System(0)] 用户 ext(%d)加入聊天室", ext.id))

	ext.say("hello from Go <b>&</b>")
	py.await(fmt.Sprintf("[ext(%d)] hello from Go <b>&</b>", ext.id))

	py.typeLine("send 你好 hello 😀")
	got := ext.awaitMessage("你好 hello 😀")
	if got.str("sender_nickname") != "张三" {
		t.Fatalf("ext got %v", got)
	}

	// A taken nickname is refused in a way the seed client understands.
	py2 := startSeedClient(t, m)
	py2.await("[Welcome]")
	py2.typeLine("login EXT")
	py2.await("无法登录到聊天室")
	py2.typeLine("login 李四")
	py2.await("成功登录到聊天室")
	py.await("用户 李四")

	ext.say(strings.Repeat("长", 1000)) // several pushes, each one parseable
	py.await(strings.Repeat("长", 100))
	ext.say("after the long one")
	py.await("after the long one")
}
