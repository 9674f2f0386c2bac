package tiers

import (
	"fmt"
	"time"
)

// Level is one tier held by a session.
type Level struct {
	// Tier is the tier's name.
	Tier string `json:"t"`
	// Base is the tier's base at the time of authentication; if the
	// configuration re-parents the tier, the level no longer counts.
	Base string `json:"b,omitempty"`
	// Method that reached the level, and the credential it used (a user name,
	// a credential id; never a secret).
	Method     string `json:"m"`
	Credential string `json:"c,omitempty"`
	// At is when the user authenticated to the tier.
	At time.Time `json:"at"`
}

// Reasons a level leaves the stack.
const (
	ReasonLapsed     = "lapsed"
	ReasonRemoved    = "tier_removed"
	ReasonReparented = "tier_reparented"
	ReasonCascade    = "base_closed"
	ReasonLogOff     = "logoff"
)

// Drop records a level that left the stack and why.
type Drop struct {
	Tier   string
	Reason string
}

// Stack is the set of tiers a session holds, in the order they were
// reached. It is always closed under "base": a held tier's base is held.
// Stacks are values: every operation returns a new stack and leaves its
// receiver untouched, so a stack shared through a cache is never mutated.
type Stack []Level

// find returns the index of the tier in the stack, or -1.
func (s Stack) find(name string) int {
	for i := range s {
		if s[i].Tier == name {
			return i
		}
	}
	return -1
}

// Level returns the level of the named tier, if held.
func (s Stack) Level(name string) (Level, bool) {
	if i := s.find(name); i >= 0 {
		return s[i], true
	}
	return Level{}, false
}

// Names lists the held tiers in the order they were reached.
func (s Stack) Names() []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i].Tier
	}
	return out
}

// fresh reports whether a level is still within its tier's max age and, when
// maxAge > 0, within that stricter bound too.
func fresh(t *Tier, l Level, now time.Time, maxAge time.Duration) bool {
	age := now.Sub(l.At)
	if age < 0 {
		age = 0 // clock stepped back: treat as just authenticated, not as invalid
	}
	if age >= t.MaxAge {
		return false
	}
	return maxAge <= 0 || age < maxAge
}

// Reconcile drops the levels that no longer count under h at now: tiers that
// were removed or re-parented, levels past their max age, and, in a cascade,
// every level whose base is no longer held. The result is closed under base.
func (s Stack) Reconcile(h *Hierarchy, now time.Time) (Stack, []Drop) {
	if s.consistent(h, now) {
		return s, nil
	}
	var drops []Drop
	valid := make(map[string]bool, len(s))
	for _, l := range s {
		t, ok := h.tiers[l.Tier]
		switch {
		case !ok:
			drops = append(drops, Drop{l.Tier, ReasonRemoved})
		case t.Base != l.Base:
			drops = append(drops, Drop{l.Tier, ReasonReparented})
		case !fresh(t, l, now, 0):
			drops = append(drops, Drop{l.Tier, ReasonLapsed})
		default:
			valid[l.Tier] = true
		}
	}
	// Cascade: a valid level whose base chain is broken goes too. Chains are
	// short, so walking each one is cheaper than sorting by depth.
	kept := valid
	for name := range valid {
		for b := h.tiers[name].Base; b != ""; b = h.tiers[b].Base {
			if !valid[b] {
				delete(kept, name)
				drops = append(drops, Drop{name, ReasonCascade})
				break
			}
		}
	}
	if len(drops) == 0 {
		return s, nil
	}
	out := make(Stack, 0, len(kept))
	for _, l := range s {
		if kept[l.Tier] {
			out = append(out, l)
		}
	}
	return out, drops
}

// consistent is the allocation-free check of the common case: every level
// is known, unmoved and fresh, and its base is held (so, inductively, the
// whole chain below it is).
func (s Stack) consistent(h *Hierarchy, now time.Time) bool {
	for _, l := range s {
		t, ok := h.tiers[l.Tier]
		if !ok || t.Base != l.Base || !fresh(t, l, now, 0) {
			return false
		}
		if t.Base != "" && s.find(t.Base) < 0 {
			return false
		}
	}
	return true
}

// Holds reports whether the tier is held and fresh at now; maxAge > 0 is a
// stricter freshness bound than the tier's own (a transaction set's).
func (s Stack) Holds(h *Hierarchy, name string, now time.Time, maxAge time.Duration) bool {
	t, ok := h.tiers[name]
	if !ok {
		return false
	}
	i := s.find(name)
	return i >= 0 && s[i].Base == t.Base && fresh(t, s[i], now, maxAge)
}

// Next returns the first tier on the chain from the root to target that the
// stack does not hold fresh, or "" when nothing is missing. maxAge applies to
// target alone, as a transaction set's stricter freshness does.
func (s Stack) Next(h *Hierarchy, target string, now time.Time, maxAge time.Duration) (string, error) {
	chain, err := h.Chain(target)
	if err != nil {
		return "", err
	}
	for i, name := range chain {
		bound := time.Duration(0)
		if i == len(chain)-1 {
			bound = maxAge
		}
		if !s.Holds(h, name, now, bound) {
			return name, nil
		}
	}
	return "", nil
}

// Push adds (or refreshes, in place) a level. The tier's base must be held and fresh:
// one cannot authenticate to a tier whose base is not held. Levels above the
// pushed tier stay, since their base is still held.
func (s Stack) Push(h *Hierarchy, l Level, now time.Time) (Stack, error) {
	t, ok := h.tiers[l.Tier]
	if !ok {
		return s, fmt.Errorf("%w %q", ErrUnknownTier, l.Tier)
	}
	if t.Base != "" && !s.Holds(h, t.Base, now, 0) {
		return s, fmt.Errorf("tier %q: %w (%q)", l.Tier, ErrBaseNotHeld, t.Base)
	}
	l.Base = t.Base
	if l.Method == "" {
		l.Method = t.Method
	}
	out := make(Stack, len(s), len(s)+1)
	copy(out, s)
	if i := s.find(l.Tier); i >= 0 {
		out[i] = l // a refresh keeps the level's place
		return out, nil
	}
	return append(out, l), nil
}

// LogOff closes the named tier and every tier above it, returning the user to
// the tier's base. Logging off at a root tier closes everything: the session
// ends (ended is true). Logging off at a tier not held changes nothing.
func (s Stack) LogOff(h *Hierarchy, name string) (out Stack, closed []string, ended bool) {
	t, known := h.tiers[name]
	held := s.find(name) >= 0
	if !held {
		return s, nil, false
	}
	if !known || t.Base == "" {
		// A root (or a tier the configuration no longer knows, which can
		// only be treated as the most severe case): the session ends.
		return Stack{}, s.Names(), true
	}
	gone := map[string]bool{name: true}
	for _, d := range h.Descendants(name) {
		gone[d] = true
	}
	out = make(Stack, 0, len(s))
	for _, l := range s {
		if gone[l.Tier] {
			closed = append(closed, l.Tier)
		} else {
			out = append(out, l)
		}
	}
	return out, closed, false
}

// Highest returns the deepest tier held (the latest reached among equals),
// or "" for an empty stack.
func (s Stack) Highest(h *Hierarchy) string {
	best, bestDepth := "", -1
	for _, l := range s {
		if d, ok := h.depth[l.Tier]; ok && d >= bestDepth {
			best, bestDepth = l.Tier, d
		}
	}
	return best
}

// Remaining is how long the held tier stays fresh at now (0 if not held).
func (s Stack) Remaining(h *Hierarchy, name string, now time.Time) time.Duration {
	t, ok := h.tiers[name]
	i := s.find(name)
	if !ok || i < 0 {
		return 0
	}
	if r := s[i].At.Add(t.MaxAge).Sub(now); r > 0 {
		return r
	}
	return 0
}

// Root returns the root tier of name's chain.
func (h *Hierarchy) Root(name string) string {
	t, ok := h.tiers[name]
	for ok && t.Base != "" {
		t = h.tiers[t.Base]
	}
	if !ok {
		return ""
	}
	return t.Name
}
