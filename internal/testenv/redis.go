package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis is a running redis-server on a loopback port, stopped when the test
// ends. It keeps its data in an append-only file that is synced on every
// write, so that a server killed and started again has lost nothing.
type Redis struct {
	Addr string
	t    testing.TB
	bin  string
	args []string
	out  *Output
	cmd  *exec.Cmd
}

// Log returns what the server printed so far.
func (r *Redis) Log() string { return r.out.String() }

func redisBinary(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (Debian packages redis-server and redis-tools; `make test` installs them): %v", name, err)
	}
	return bin
}

// StartRedis runs a single Redis server.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, FreeTCPPort(t))
}

func startRedis(t testing.TB, port int, extra ...string) *Redis {
	t.Helper()
	bin := redisBinary(t, "redis-server")
	dir := t.TempDir()
	args := append([]string{
		"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--daemonize", "no", "--logfile", "", "--loglevel", "notice",
	}, extra...)
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port), t: t, bin: bin, args: args}
	r.start()
	return r
}

func (r *Redis) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, r.args...)
	r.out = Start(r.t, "redis-server "+r.Addr, r.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.Log(), "Ready to accept connections") {
		if time.Now().After(deadline) || r.out.Exited() {
			r.t.Fatalf("redis-server did not start:\n%s", r.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (r *Redis) Kill() {
	r.t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	for !r.out.Exited() {
		time.Sleep(5 * time.Millisecond)
	}
}

// Restart starts the server again on the same port with the same data.
func (r *Redis) Restart() { r.t.Helper(); r.start() }

// RedisCluster is a running three-master Redis Cluster on loopback.
type RedisCluster struct {
	Addrs []string
	Nodes []*Redis
}

// StartRedisCluster runs three cluster-enabled servers and joins them with
// `redis-cli --cluster create` (no replicas), waiting until every node
// reports the cluster ok.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	cli := redisBinary(t, "redis-cli")
	c := &RedisCluster{}
	for range 3 {
		port := freeClusterPort(t)
		n := startRedis(t, port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range c.Addrs {
		host, port, _ := net.SplitHostPort(addr)
		for {
			out, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").CombinedOutput()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok:\n%s", addr, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// FreeTCPPort returns a TCP port free on loopback now.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeClusterPort returns a port free on loopback whose cluster bus port
// (the port + 10000) is free too.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := FreeTCPPort(t)
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// StartRedisWith runs a single Redis server with extra arguments, serving
// on port (a TLS server: "--port", "0", "--tls-port", port, …).
func StartRedisWith(t testing.TB, port int, extra ...string) *Redis {
	t.Helper()
	return startRedis(t, port, extra...)
}

// StartRedisSentinel runs a Sentinel (redis-server --sentinel) that
// monitors the master at masterAddr under the name master, and returns its
// address once it knows the master.
func StartRedisSentinel(t testing.TB, master, masterAddr string) string {
	t.Helper()
	bin := redisBinary(t, "redis-server")
	cli := redisBinary(t, "redis-cli")
	dir := t.TempDir()
	port := FreeTCPPort(t)
	host, mport, _ := net.SplitHostPort(masterAddr)
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 2000\n",
		port, dir, master, host, mport, master)
	path := dir + "/sentinel.conf"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	Start(t, "redis-sentinel", exec.Command(bin, path, "--sentinel"))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command(cli, "-p", fmt.Sprint(port), "sentinel", "get-master-addr-by-name", master).CombinedOutput()
		if strings.Contains(string(out), mport) {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not know %s:\n%s", master, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
