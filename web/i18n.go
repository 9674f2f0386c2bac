package web

import (
	"embed"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// The pages speak the language the browser asks for (Accept-Language),
// among those with a complete catalogue in locales/: English, the default,
// and German. A catalogue is a go-i18n JSON message file; every message ID
// the pages use is in each of them (TestCataloguesComplete).

//go:embed locales/*.json
var localeFS embed.FS

var (
	bundle    *i18n.Bundle
	languages []language.Tag
	matcher   language.Matcher
)

func init() {
	bundle = i18n.NewBundle(language.English)
	bundle.RegisterUnmarshalFunc("json", json.Unmarshal)
	entries, err := localeFS.ReadDir("locales")
	if err != nil {
		panic(err)
	}
	languages = []language.Tag{language.English} // first: the fallback
	for _, e := range entries {
		b, err := localeFS.ReadFile("locales/" + e.Name())
		if err != nil {
			panic(err)
		}
		bundle.MustParseMessageFileBytes(b, e.Name())
		tag := language.Make(strings.TrimSuffix(e.Name(), ".json"))
		if tag != language.English {
			languages = append(languages, tag)
		}
	}
	matcher = language.NewMatcher(languages)
}

// lang is the language of one request's page.
type lang struct {
	loc *i18n.Localizer
	// Tag is the BCP 47 tag of the language chosen (the page's lang).
	Tag string
}

var (
	langCache  sync.Map // Accept-Language -> *lang (headers repeat)
	langCached atomic.Int64
)

// langOf picks the language for a request from its Accept-Language.
func langOf(r *http.Request) *lang {
	accept := ""
	if r != nil {
		accept = r.Header.Get("Accept-Language")
	}
	if len(accept) > 200 {
		accept = accept[:200]
	}
	if l, ok := langCache.Load(accept); ok {
		return l.(*lang)
	}
	tags, _, _ := language.ParseAcceptLanguage(accept)
	_, i, _ := matcher.Match(tags...)
	tag := languages[i]
	l := &lang{loc: i18n.NewLocalizer(bundle, tag.String()), Tag: tag.String()}
	if langCached.Add(1) <= 256 { // headers vary little; never an unbounded cache
		langCache.Store(accept, l)
	}
	return l
}

// T says the message id in the page's language; args are name, value
// pairs for the message's template ({{.Name}}); a "Count" argument also
// picks the plural form.
func (l *lang) T(id string, args ...any) string {
	// A message missing in the chosen language falls back to English
	// (with an error); a test keeps the catalogues complete.
	if s, _ := l.localize(id, args); s != "" {
		return s
	}
	return id
}

func (l *lang) localize(id string, args []any) (string, error) {
	cfg := &i18n.LocalizeConfig{MessageID: id}
	if len(args) > 1 {
		data := make(map[string]any, len(args)/2)
		for i := 0; i+1 < len(args); i += 2 {
			k, _ := args[i].(string)
			data[k] = args[i+1]
			if d, ok := args[i+1].(time.Duration); ok {
				data[k] = l.Duration(d) // in words, in this language
			}
			if k == "Count" {
				cfg.PluralCount = args[i+1]
			}
		}
		cfg.TemplateData = data
	}
	return l.loc.Localize(cfg)
}

// Or says the message id when a catalogue has it, else fallback: the
// words a method gives for itself ("method.totp.title"), which a third
// party's method brings in its own language.
func (l *lang) Or(id, fallback string, args ...any) string {
	if s, _ := l.localize(id, args); s != "" {
		return s
	}
	return fallback
}

// S says a text.
func (l *lang) S(t text) string {
	if t.ID == "" {
		return t.Raw
	}
	return l.T(t.ID, t.Args...)
}

// text is a message to be said in the page's language: a message id and
// its arguments (name, value pairs).
type text struct {
	ID   string
	Args []any
	// Raw, without an ID, is said as it is (a method's or a RADIUS
	// server's own words, already in the user's language or none).
	Raw string
}

func tx(id string, args ...any) text { return text{ID: id, Args: args} }

// denialText is what a page says of a refusal: its message in the user's
// language when it has one (stepup.Denial.Message), else its detail.
func denialText(d *stepup.Denial) text {
	if d.Message != "" {
		return text{ID: d.Message, Args: d.Args}
	}
	return text{Raw: d.Detail}
}

// Duration says a duration in words: "8 hours", "4 minutes", "45 seconds"
// (rounded to the unit; "2 hours 30 minutes" below ten hours, so that a
// session page is honest about half an hour).
func (l *lang) Duration(d time.Duration) string {
	switch {
	case d <= 0:
		return l.T("duration.none")
	case d < time.Minute:
		return l.T("duration.seconds", "Count", int(d.Seconds()+0.5))
	case d < time.Hour:
		return l.T("duration.minutes", "Count", int((d + 30*time.Second).Minutes()))
	}
	d = d.Round(time.Minute)
	h, m := int(d.Hours()), int(d.Minutes())%60
	if m == 0 || h >= 10 {
		return l.T("duration.hours", "Count", int((d + 30*time.Minute).Hours()))
	}
	return l.T("duration.hours", "Count", h) + " " + l.T("duration.minutes", "Count", m)
}
