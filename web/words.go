package web

import (
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// The words the pages use for what the configuration names: tiers and
// transaction sets by their labels, methods by what they call themselves
// (translated where a catalogue knows the method, as "method.totp.title").

// methodKey is the catalogue prefix of a method's words: a method that
// establishes identity (a sign-in) speaks differently from one that
// confirms it.
func methodKey(m stepup.Method) string {
	k := "method." + m.Name()
	if m.Identifies() {
		k += ".login"
	}
	return k
}

// tierLabel names a tier for people: its label, else what its method is
// called ("Security code"), else its name. Two tiers of one method that
// have no labels are told apart by their names: "Password (sudo)".
func (g *Gateway) tierLabel(l *lang, tier string) string {
	label := g.defaultTierLabel(l, tier)
	t, ok := g.Engine.Hierarchy.Get(tier)
	if !ok || t.Label != "" {
		return label
	}
	for _, other := range g.Engine.Hierarchy.Names() {
		if other != tier && g.defaultTierLabel(l, other) == label {
			return label + " (" + tier + ")"
		}
	}
	return label
}

func (g *Gateway) defaultTierLabel(l *lang, tier string) string {
	t, ok := g.Engine.Hierarchy.Get(tier)
	if ok && t.Label != "" {
		return t.Label
	}
	if m, ok := g.Engine.Method(tier, ""); ok {
		return l.Or("tier."+strings.TrimPrefix(methodKey(m), "method."), l.Or(methodKey(m)+".title", m.Prompt("").Title))
	}
	return tier
}

// setLabel names a transaction set for people ("" when it has no label).
func (g *Gateway) setLabel(name string) string {
	if g.Policy == nil {
		return ""
	}
	for i := range g.Policy.Sets {
		if g.Policy.Sets[i].Name == name {
			return g.Policy.Sets[i].Label
		}
	}
	return ""
}

// methodTitle names a method's step for people.
func methodTitle(l *lang, m stepup.Method) string {
	return l.Or(methodKey(m)+".title", m.Prompt("").Title)
}

// credentialName names a method's credential for people ("security key").
func credentialName(l *lang, m stepup.Method) string {
	fallback := "credential"
	if n, ok := m.(stepup.CredentialNamer); ok {
		fallback = n.CredentialName()
	}
	return l.Or("credential."+m.Name(), fallback)
}

// outcomeMessage is what a method said about a rejected answer, in the
// page's language where the catalogue knows the reason.
func outcomeMessage(l *lang, m stepup.Method, o *stepup.Outcome) string {
	if o == nil {
		return l.T("step.failed")
	}
	if o.Message == "" {
		return l.T("step.failed")
	}
	if m != nil && o.Reason != "" {
		return l.Or("outcome."+m.Name()+"."+o.Reason, o.Message)
	}
	return o.Message
}

// inputs are a method's form fields with translated labels.
func inputs(l *lang, m stepup.Method, fields []stepup.Field, values map[string]string) []input {
	out := make([]input, 0, len(fields))
	focused := false
	for _, f := range fields {
		in := input{Name: f.Name, Label: l.Or(methodKey(m)+".field."+f.Name, f.Label), Type: f.Type, Autocomplete: f.Autocomplete, InputMode: f.InputMode}
		if f.Type != "password" {
			in.Value = values[f.Name]
		}
		if !focused && in.Value == "" {
			in.Focus, focused = true, true
		}
		out = append(out, in)
	}
	return out
}

// lowerFirst lowers the first letter of a label inside an English
// sentence ("needs your security code"), but not of a name that is all
// capitals ("RADIUS token").
func lowerFirst(l *lang, s string) string {
	if l.Tag != "en" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || n >= len(s) {
		return s
	}
	r2, _ := utf8.DecodeRuneInString(s[n:])
	if unicode.IsUpper(r) && !unicode.IsUpper(r2) {
		return string(unicode.ToLower(r)) + s[n:]
	}
	return s
}

func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// askedFor finds the transaction set that sends a navigation to step up:
// the sets that require the target and match the return path, looked up
// on the server (nothing of it is taken from the URL but the path the
// user goes on to, which must itself match the set).
func (g *Gateway) askedFor(r *http.Request, target, ret string, maxAge time.Duration) (set string, ok bool) {
	if g.Policy == nil || ret == "" || ret == "/" && len(g.Policy.Sets) == 0 {
		return "", false
	}
	probe := r.Clone(r.Context())
	probe.Method = http.MethodGet
	u, err := r.URL.Parse(ret)
	if err != nil {
		return "", false
	}
	probe.URL = u
	probe.RequestURI = ret
	probe.Body = http.NoBody
	probe.ContentLength = 0
	best := -1
	for i := range g.Policy.Sets {
		st := &g.Policy.Sets[i]
		if st.Tier != target || st.Match == nil {
			continue
		}
		if matched, err := st.Match(probe); err != nil || !matched {
			continue
		}
		if best < 0 || (st.HasMaxAge && st.MaxAge == maxAge) || (g.Policy.Sets[best].Label == "" && st.Label != "") {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return g.Policy.Sets[best].Name, true
}

// why says what asked for a step and how fresh it must be: "Admin area
// needs your security code from the last 5 minutes."
func (g *Gateway) why(l *lang, setLabel string, kept bool, tier string, maxAge time.Duration, perRequest bool) string {
	what := setLabel
	if what == "" {
		what = l.T("step.this_page")
		if kept {
			what = l.T("step.this_action")
		}
	}
	tl := lowerFirst(l, g.tierLabel(l, tier))
	switch {
	case perRequest:
		return l.T("step.why_now", "Set", what, "Tier", tl)
	case maxAge > 0:
		return l.T("step.why_age", "Set", what, "Tier", tl, "Age", l.Duration(maxAge))
	}
	return l.T("step.why", "Set", what, "Tier", tl)
}

// hasPrefixPath reports whether a return URL is one of the module's pages.
func (g *Gateway) hasPrefixPath(u string) bool {
	p, _, _ := strings.Cut(u, "?")
	return p == g.Engine.Prefix || strings.HasPrefix(p, g.Engine.Prefix+"/")
}
