package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/adapt")

// fragmentWrapper holds a README example that is a tier block alone, so
// that it adapts as a whole configuration.
const fragmentWrapper = `{
	stepup {
		tier login {
			method password
			max_age 1h
		}
		tier otp {
			base login
			method totp {
				enroll self
			}
			max_age 1h
		}
%s
	}
}
`

// TestREADMEExamplesAdaptToTheGoldenJSON adapts every Caddyfile example of
// the README, as `caddy adapt` does, and compares the JSON with the golden
// files in testdata/adapt (go test -run READMEExamples -update rewrites
// them): what the README shows is what the module reads, and the JSON
// shape of each guest module is pinned down.
func TestREADMEExamplesAdaptToTheGoldenJSON(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)\n( *)```caddyfile\n(.*?)\n *```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 4 {
		t.Fatalf("found %d Caddyfile examples in the README", len(blocks))
	}
	for i, m := range blocks {
		src := dedent(m[2], m[1])
		switch {
		case strings.HasPrefix(src, "tier "):
			src = fmt.Sprintf(fragmentWrapper, src)
		case strings.HasPrefix(src, "notify "):
			// A notifier alone goes in an approval policy.
			src = fmt.Sprintf(fragmentWrapper, "approval p {\napprovers user:carol\n"+src+"\n}")
		}
		cfg, _, err := adaptCaddyfile(src)
		if err != nil {
			t.Errorf("README example %d does not adapt: %v\n%s", i+1, err, src)
			continue
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, cfg, "", "\t"); err != nil {
			t.Fatal(err)
		}
		pretty.WriteByte('\n')
		golden := filepath.Join("..", "testdata", "adapt", fmt.Sprintf("readme-%d.json", i+1))
		if *update {
			if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./caddymodule -run READMEExamples -update)", err)
		}
		if !bytes.Equal(want, pretty.Bytes()) {
			t.Errorf("README example %d adapts to\n%s\nnot the golden %s", i+1, pretty.String(), golden)
		}
	}
}

// dedent removes the indentation of an example nested in a list item.
func dedent(s, indent string) string {
	if indent == "" {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, indent)
	}
	return strings.Join(lines, "\n")
}
