// Command xcaddyargs turns xcaddy.json, the build manifest, into the
// arguments of `xcaddy build`: the Caddy version, then --with for each plugin
// (module=replacement when the manifest gives a local replacement). The
// Makefile's build target reads the manifest through it.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type manifest struct {
	CaddyVersion string `json:"caddy_version"`
	Plugins      []struct {
		Module  string `json:"module"`
		Version string `json:"version"`
		Replace string `json:"replace"`
	} `json:"plugins"`
}

func main() {
	path := "xcaddy.json"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	var m manifest
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		fail(fmt.Errorf("%s: %w", path, err))
	}
	if !strings.HasPrefix(m.CaddyVersion, "v2.") {
		fail(fmt.Errorf("%s: caddy_version must be a v2 version, not %q", path, m.CaddyVersion))
	}
	args := []string{m.CaddyVersion}
	for _, p := range m.Plugins {
		if p.Module == "" {
			fail(fmt.Errorf("%s: plugin without module", path))
		}
		with := p.Module
		if p.Version != "" {
			with += "@" + p.Version
		}
		if p.Replace != "" {
			with += "=" + p.Replace
		}
		args = append(args, "--with", with)
	}
	fmt.Println(strings.Join(args, " "))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "xcaddyargs:", err)
	os.Exit(1)
}
