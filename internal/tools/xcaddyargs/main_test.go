package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Makefile's build reads the repository's manifest through this
// command; the test runs it on that manifest.
func TestManifestToArguments(t *testing.T) {
	out, err := exec.Command("go", "run", ".", "../../../xcaddy.json").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "v2.11.9 --with github.com/caddy-stepup/caddy-stepup=./" {
		t.Fatalf("arguments %q", got)
	}
	bad := filepath.Join(t.TempDir(), "x.json")
	_ = os.WriteFile(bad, []byte(`{"caddy_version": "v2.11.9", "plugins": [{"module": "m", "extra": 1}]}`), 0o600)
	if out, err := exec.Command("go", "run", ".", bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown field") {
		t.Fatalf("a manifest with an unknown field was accepted: %s", out)
	}
}
