package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServer is an embedded NATS server with JetStream, on loopback, that
// a test may stop and start again on the same port and store (an outage).
type natsServer struct {
	t    *testing.T
	dir  string
	port int
	ns   *server.Server
}

// startNATS starts a NATS server with JetStream in a temporary directory.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir(), port: -1}
	n.start()
	n.port = n.ns.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true,
		StoreDir: filepath.Join(n.dir, "js"), NoLog: true, NoSigs: true, ServerName: "test"})
	if err != nil {
		n.t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(waitTime) {
		n.t.Fatal("nats-server not ready")
	}
	n.ns = ns
}

func (n *natsServer) stop() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
		n.ns = nil
	}
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// startNode runs a chatd that is one node of the cluster on n.
func startNode(t *testing.T, n *natsServer, name string, mutate ...func(*Config)) *Main {
	t.Helper()
	return startServer(t, append([]func(*Config){func(c *Config) {
		c.NATSURL, c.NodeName = n.url(), name
		c.NodeDeadAfter = 2 * time.Second
	}}, mutate...)...)
}

// startCluster runs nodes chatd nodes on one NATS server.
func startCluster(t *testing.T, nodes int, mutate ...func(*Config)) (*natsServer, []*Main) {
	t.Helper()
	n := startNATS(t)
	ms := make([]*Main, nodes)
	for i := range ms {
		ms[i] = startNode(t, n, fmt.Sprintf("node%d", i+1), mutate...)
	}
	return n, ms
}

func TestClusterChatAcrossNodes(t *testing.T) {
	_, nodes := startCluster(t, 2)
	alice := dialTCP(t, nodes[0], "alice")
	alice.login("alice")
	bob := dialWS(t, nodes[1], "bob")
	bob.login("bob")
	alice.await("bob's join", func(x msg) bool { return x.str("type") == "join" && x.str("message") == "bob joined" })

	bob.say("hello from node 2")
	got := alice.awaitMessage("hello from node 2")
	if got.num("sender_id") != bob.id || got.str("sender_nickname") != "bob" {
		t.Fatalf("alice got %v", got)
	}
	alice.say("hello from node 1")
	echo := bob.awaitMessage("hello from node 1")
	if echo.num("seq") != got.num("seq")+1 {
		t.Fatalf("seq %d after %d", echo.num("seq"), got.num("seq"))
	}
	if alice.id == bob.id {
		t.Fatalf("two members share id %d", alice.id)
	}
}
