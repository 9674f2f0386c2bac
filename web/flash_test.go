package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// TestFlashIsSignedOneTimeAndShortLived: the notice after an action names
// a message of the catalogue in a signed cookie; a forged, altered or
// stale cookie, or one naming anything else, shows nothing, and reading
// it clears it.
func TestFlashIsSignedOneTimeAndShortLived(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	g := &Gateway{Engine: &stepup.Engine{Prefix: "/_stepup", FlashKey: []byte("0123456789abcdef0123456789abcdef"),
		Now: func() time.Time { return now }, Scheme: func(*http.Request) string { return "http" }}}
	set := func(id string) *http.Cookie {
		w := httptest.NewRecorder()
		g.setFlash(w, httptest.NewRequest("POST", "/_stepup/logout", nil), id)
		cs := w.Result().Cookies()
		if len(cs) == 0 {
			return nil
		}
		return cs[0]
	}
	take := func(c *http.Cookie) (string, *httptest.ResponseRecorder) {
		r := httptest.NewRequest("GET", "/_stepup/", nil)
		if c != nil {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		return g.takeFlash(w, r), w
	}
	c := set("flash.signed_out")
	if c == nil || c.Path != "/_stepup/" || !c.HttpOnly || c.MaxAge != 60 {
		t.Fatalf("flash cookie %+v", c)
	}
	got, w := take(c)
	if got != "flash.signed_out" {
		t.Fatalf("flash read %q", got)
	}
	if cleared := w.Result().Cookies(); len(cleared) != 1 || cleared[0].MaxAge >= 0 {
		t.Errorf("reading the flash did not clear it: %+v", cleared)
	}
	if set("msg.anything_else") != nil {
		t.Error("a flash naming a message that is not a notice was set")
	}
	forged := *c
	forged.Value = strings.Replace(c.Value, "flash.signed_out", "flash.key_removed", 1)
	if got, _ := take(&forged); got != "" {
		t.Errorf("a forged flash showed %q", got)
	}
	now = now.Add(2 * time.Minute)
	if got, _ := take(c); got != "" {
		t.Errorf("a stale flash showed %q", got)
	}
	if got, _ := take(&http.Cookie{Name: flashCookie, Value: "<script>"}); got != "" {
		t.Errorf("garbage showed %q", got)
	}
}
