package testenv

import (
	"bytes"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Start runs cmd with its output in a buffer and stops it (SIGTERM, then
// SIGKILL after 10 s) when the test ends, showing the output if the test
// failed.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Output {
	t.Helper()
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	out.exited = exited
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out
}

// Output is what a started process printed, safe to read while it runs.
type Output struct {
	lockedBuffer
	exited <-chan struct{}
}

// Exited reports whether the process has ended.
func (o *Output) Exited() bool {
	select {
	case <-o.exited:
		return true
	default:
		return false
	}
}

// lockedBuffer is a buffer written by a process and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
