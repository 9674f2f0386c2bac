// Package webhook is the notifier module stepup.notifiers.webhook: approval
// events POSTed as JSON to a URL, signed as the Standard Webhooks
// specification says, queued and retried in the background so that a
// receiver's outage never holds up or fails a request. The sender is
// stepup/webhook; this package is its Caddy configuration.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/webhook"
)

func init() {
	caddy.RegisterModule(Webhook{})
}

// Webhook sends each approval event (requested, decided, expired, used,
// break_glass) as a signed JSON POST.
//
// Syntax (the directive's name is the host's: `notify` in an approval
// policy):
//
//	notify <url> {
//		secret   <key>        # required: whsec_<base64>, or text; placeholders expanded
//		timeout  <duration>   # per attempt, default 15s
//		attempts <n>          # default 5
//		queue    <n>          # default 1000
//	}
type Webhook struct {
	// URL receives the POSTs: http or https. Placeholders such as
	// {env.STEPUP_WEBHOOK_URL} are expanded when the config loads.
	URL string `json:"url"`
	// Secret signs every message (HMAC-SHA256, header webhook-signature).
	// "whsec_" followed by base64 is decoded, as the Standard Webhooks
	// libraries expect; any other value is used as text (its bytes are the
	// key). Placeholders such as {env.STEPUP_WEBHOOK_SECRET} are expanded
	// when the config loads. Required.
	Secret string `json:"secret"`
	// Timeout of one attempt, up to the receiver's response. Default: 15s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Attempts per message, the first included: a network error, a timeout,
	// 408, 429 and 5xx are retried with exponential backoff and jitter
	// (from 5s; a Retry-After on 429 and 503 is honoured, up to 5m); other
	// answers are not. Default: 5.
	Attempts int `json:"attempts,omitempty"`
	// Queue is how many messages may wait for delivery; when it is full a
	// new one is dropped (and counted in a warning) rather than waited for.
	// Default: 1000.
	Queue int `json:"queue,omitempty"`

	url    string // URL expanded
	sender *webhook.Sender
}

// CaddyModule returns the Caddy module information.
func (Webhook) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.notifiers.webhook", New: func() caddy.Module { return new(Webhook) }}
}

// Provision expands the placeholders and starts the sender's queue, which
// stops with the config (ctx) or on Cleanup.
func (w *Webhook) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	w.url = repl.ReplaceKnown(w.URL, "")
	if err := w.Validate(); err != nil {
		return err
	}
	key, err := webhook.ParseSecret(repl.ReplaceKnown(w.Secret, ""))
	if errors.Is(err, webhook.ErrEmptySecret) {
		return fmt.Errorf("notify %s: empty secret (is the environment variable set?)", w.url)
	}
	if err != nil {
		return fmt.Errorf("notify %s: %w", w.url, err)
	}
	w.sender, err = webhook.Start(ctx, webhook.Config{
		URL:       w.url,
		Key:       key,
		Timeout:   time.Duration(w.Timeout),
		Attempts:  w.Attempts,
		QueueSize: w.Queue,
		Logger:    ctx.Logger(),
	})
	return err
}

// Validate checks the URL and the numbers.
func (w *Webhook) Validate() error {
	target := w.url
	if target == "" {
		target = w.URL
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("notify %q: want an http:// or https:// URL", target)
	}
	if w.Secret == "" {
		return fmt.Errorf("notify %s: missing secret", target)
	}
	if w.Timeout < 0 || w.Attempts < 0 || w.Queue < 0 {
		return fmt.Errorf("notify %s: negative timeout, attempts or queue", target)
	}
	return nil
}

// Notify implements stepup.Notifier: it queues the event and returns at
// once; ErrQueueFull when the queue is full.
func (w *Webhook) Notify(ctx context.Context, n stepup.Notification) error {
	if w.sender == nil {
		return errors.New("notify: webhook notifier not provisioned")
	}
	return w.sender.Notify(ctx, n)
}

// Cleanup stops the sender, letting it deliver what is queued for a short
// grace.
func (w *Webhook) Cleanup() error {
	if w.sender != nil {
		return w.sender.Close()
	}
	return nil
}

// UnmarshalCaddyfile reads `notify <url> { … }`; the dispenser starts on
// the directive's name, whatever the host calls it.
func (w *Webhook) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: missing URL", name)
	}
	w.URL = d.Val()
	if d.NextArg() {
		return d.Errf("%s: one URL, then a block { secret …; timeout …; attempts …; queue … }", name)
	}
	seen := map[string]bool{}
	err := syntax.Block(d, func(sub string) error {
		if err := syntax.Once(d, seen, sub); err != nil {
			return err
		}
		switch sub {
		case "secret":
			return syntax.String(d, &w.Secret)
		case "timeout":
			return syntax.Duration(d, &w.Timeout)
		case "attempts":
			return syntax.Int(d, &w.Attempts)
		case "queue":
			return syntax.Int(d, &w.Queue)
		default:
			return d.Errf("%s has no option %q", name, sub)
		}
	})
	if err == nil && w.Secret == "" {
		return d.Errf("%s %s: missing secret", name, w.URL)
	}
	return err
}

var (
	_ stepup.Notifier       = (*Webhook)(nil)
	_ caddy.Provisioner     = (*Webhook)(nil)
	_ caddy.Validator       = (*Webhook)(nil)
	_ caddy.CleanerUpper    = (*Webhook)(nil)
	_ caddyfile.Unmarshaler = (*Webhook)(nil)
)
