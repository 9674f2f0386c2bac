package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// chrome is a headless Chromium with a CDP virtual WebAuthn authenticator:
// a platform authenticator with user verification (as a fingerprint
// reader is), answering without a person present.
type chrome struct {
	t    *testing.T
	ctx  context.Context
	auth webauthn.AuthenticatorID
	base string
}

// chromeTimeout bounds a browser's whole test.
var chromeTimeout = 90 * time.Second

func startChrome(t *testing.T, s *server) *chrome {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (Debian package chromium; `make test` installs it): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, chromeTimeout)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true,
			HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("AddVirtualAuthenticator: %v", err)
	}
	return &chrome{t: t, ctx: ctx, auth: res.AuthenticatorID, base: fmt.Sprintf("http://localhost:%d", s.port)}
}

func (c *chrome) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, steps...); err != nil {
		c.t.Fatalf("browser: %v\npage: %s", err, c.body())
	}
}

func (c *chrome) open(path string) { c.t.Helper(); c.do(chromedp.Navigate(c.base + path)) }

func (c *chrome) body() string {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return text
}

func (c *chrome) path() string {
	loc, _ := chromedp.Run(c.ctx, chromedp.Location())
	return strings.TrimPrefix(loc, c.base)
}

// waitText waits until the page's text contains want.
func (c *chrome) waitText(want string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(c.body(), want) {
		if time.Now().After(deadline) {
			c.t.Fatalf("page never showed %q; at %s it says:\n%s", want, c.path(), c.body())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitTextStart waits until the page's text starts with want (the test
// upstream answers "ok …" in plain text).
func (c *chrome) waitTextStart(want string) string {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if b := c.body(); strings.HasPrefix(b, want) {
			return b
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("page never started with %q; at %s it says:\n%s", want, c.path(), c.body())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *chrome) click(sel string) {
	c.t.Helper()
	c.do(chromedp.WaitVisible(sel), chromedp.Click(sel))
}

// submit clicks a button that loads a new page (a form post) and waits
// until the new page has loaded.
func (c *chrome) submit(sel string) {
	c.t.Helper()
	if _, err := chromedp.Run(c.ctx, chromedp.Evaluate[bool](`window.__stepupOldPage = true`)); err != nil {
		c.t.Fatal(err)
	}
	c.click(sel)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__stepupOldPage !== true && document.readyState === "complete"`))
		cancel()
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("clicking %s loaded no new page; at %s:\n%s", sel, c.path(), c.body())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signIn completes the password step shown now.
func (c *chrome) signIn(user, password string) {
	c.t.Helper()
	c.do(
		chromedp.WaitVisible(`input[name="username"]`),
		chromedp.SendKeys(`input[name="username"]`, user),
		chromedp.SendKeys(`input[name="password"]`, password),
	)
	c.submit(`button[type="submit"]`)
}

// screenshot saves the page as a test artifact in testdata/artifacts.
func (c *chrome) screenshot(name string) {
	c.t.Helper()
	png, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		c.t.Fatalf("screenshot: %v", err)
	}
	dir := filepath.Join("..", "testdata", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chrome) overrideBits(badUV, bogusSignature bool) {
	c.t.Helper()
	if _, err := chromedp.Call(c.ctx, webauthn.SetResponseOverrideBits, webauthn.SetResponseOverrideBitsParams{
		AuthenticatorID: c.auth, IsBadUV: &badUV, IsBogusSignature: &bogusSignature,
	}); err != nil {
		c.t.Fatalf("SetResponseOverrideBits: %v", err)
	}
}

func (c *chrome) credentials() []*webauthn.Credential {
	c.t.Helper()
	res, err := chromedp.Call(c.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: c.auth})
	if err != nil {
		c.t.Fatalf("GetCredentials: %v", err)
	}
	return res.Credentials
}

// eval runs a script that returns a promise of a string.
func (c *chrome) eval(script string) string {
	c.t.Helper()
	out, err := chromedp.Run(c.ctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil && !errors.Is(err, chromedp.ErrJSNull) {
		c.t.Fatalf("script: %v", err)
	}
	return out
}

func chromedpClear(sel string) chromedp.Action[chromedp.Void] { return chromedp.Clear(sel) }

func chromedpKeys(sel, v string) chromedp.Action[chromedp.Void] { return chromedp.SendKeys(sel, v) }

// cloneWithCounter replaces a credential by a copy (same key, same user
// handle) whose signature counter starts at n, as a clone of the
// authenticator made earlier would present it.
func (c *chrome) cloneWithCounter(cred *webauthn.Credential, n float64) {
	c.t.Helper()
	if _, err := chromedp.Call(c.ctx, webauthn.RemoveCredential, webauthn.RemoveCredentialParams{AuthenticatorID: c.auth, CredentialID: cred.CredentialID}); err != nil {
		c.t.Fatalf("RemoveCredential: %v", err)
	}
	// Newer Chromium refuses AddCredential for a ctap2 authenticator when
	// the CMTG fields that cdproto always sends are present: add the clone
	// with the fields a credential needs, and nothing else.
	clone := map[string]any{
		"credentialId":         cred.CredentialID,
		"isResidentCredential": cred.IsResidentCredential,
		"rpId":                 cred.RpID,
		"privateKey":           cred.PrivateKey,
		"userHandle":           cred.UserHandle,
		"signCount":            n,
	}
	params := map[string]any{"authenticatorId": c.auth, "credential": clone}
	addRaw := cdp.Command[map[string]any, cdp.Empty]{Method: webauthn.CommandAddCredential}
	if _, err := chromedp.Call(c.ctx, addRaw, params); err != nil {
		c.t.Fatalf("AddCredential: %v", err)
	}
}

// withoutJSONHelpers removes the WebAuthn JSON helpers from the page, as
// older browsers lack them, so that the script's base64url fallback runs.
func (c *chrome) withoutJSONHelpers() {
	c.t.Helper()
	out := c.eval(`(async () => {
  delete PublicKeyCredential.parseCreationOptionsFromJSON;
  delete PublicKeyCredential.parseRequestOptionsFromJSON;
  delete PublicKeyCredential.prototype.toJSON;
  return [typeof PublicKeyCredential.parseCreationOptionsFromJSON, typeof PublicKeyCredential.parseRequestOptionsFromJSON, typeof PublicKeyCredential.prototype.toJSON].join(',');
})()`)
	if out != "undefined,undefined,undefined" {
		c.t.Fatalf("the JSON helpers could not be removed: %s", out)
	}
}

// logOffAt clicks "Log off at <tier>" on the session page.
func (c *chrome) logOffAt(tier string) {
	c.t.Helper()
	c.open("/_stepup/")
	c.submit(`form[action="/_stepup/logout"] input[value="` + tier + `"] ~ button`)
}
