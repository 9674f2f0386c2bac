// Package stepup is the engine of caddy-stepup: the decision for a request
// (which transaction sets it matches and which tiers they require), sessions
// and their tier stacks, the authentication methods, pending requests kept
// across a step-up, rate limits and the audit trail. It imports no Caddy
// package: everything here is driven through net/http, so that it can be
// tested alone and embedded by the Caddy glue in caddymodule.
package stepup
