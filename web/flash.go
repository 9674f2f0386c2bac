package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A flash is the one-time notice the page after an action shows ("You
// signed out", "Security key removed"): the action answers with a redirect
// (post-redirect-get) and a short-lived signed cookie naming a message of
// the catalogue, which the next page of the module shows once and clears.
// Nothing of it comes from the URL, and a forged cookie can at most name
// another of the module's own messages within a minute of its signing (it
// is not bound to the session: signing out ends the session whose page
// then says so).

// FlashCookie is the name of the one-time notice cookie; the engine must
// strip it from what reaches the upstream (Engine.PageCookie).
const FlashCookie = "stepup_flash"

const (
	flashCookie = FlashCookie
	flashTTL    = time.Minute
)

// flashes are the messages a flash may name, and their arguments never
// come from the cookie.
var flashes = map[string]bool{
	"flash.signed_out": true, "flash.logged_off": true, "flash.key_removed": true, "flash.key_added": true,
	"flash.app_set_up": true, "flash.discarded": true, "flash.decided": true, "flash.justified": true,
	"flash.broke_glass": true, "flash.withdrawn": true, "flash.answer_sent": true,
}

func (g *Gateway) flashSig(id string, exp int64) string {
	m := hmac.New(sha256.New, g.Engine.FlashKey)
	m.Write([]byte(id + "\x00" + strconv.FormatInt(exp, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// setFlash makes the next page of the module say the message id.
func (g *Gateway) setFlash(w http.ResponseWriter, r *http.Request, id string) {
	if !flashes[id] {
		return
	}
	exp := g.Engine.Now().Add(flashTTL).Unix()
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: id + "~" + strconv.FormatInt(exp, 10) + "~" + g.flashSig(id, exp),
		Path: g.Engine.Prefix + "/", MaxAge: int(flashTTL.Seconds()), HttpOnly: true,
		Secure: g.Engine.Scheme(r) == "https", SameSite: http.SameSiteLaxMode,
	})
}

// takeFlash returns the message a valid flash names ("" for none) and
// clears the cookie.
func (g *Gateway) takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: g.Engine.Prefix + "/", MaxAge: -1, HttpOnly: true,
		Secure: g.Engine.Scheme(r) == "https", SameSite: http.SameSiteLaxMode})
	parts := strings.Split(c.Value, "~")
	if len(parts) != 3 || !flashes[parts[0]] {
		return ""
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || g.Engine.Now().Unix() > exp {
		return ""
	}
	if !hmac.Equal([]byte(parts[2]), []byte(g.flashSig(parts[0], exp))) {
		return ""
	}
	return parts[0]
}
