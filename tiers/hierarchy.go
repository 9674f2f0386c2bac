// Package tiers models authentication tiers (ActivID's "authentication
// policies") and the tier stack a session holds. A tier has at most one base
// tier that must be held, and fresh, before the tier itself can be reached;
// the tiers form a forest. Nothing in this package does I/O: every function is
// a pure computation over its arguments, so that the rules of tiered
// authentication can be tested exhaustively.
package tiers

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Tier is one level of authentication.
type Tier struct {
	// Name identifies the tier in configuration, sessions and challenges.
	Name string
	// Base is the tier that must be held before this one can be reached;
	// empty for a root tier.
	Base string
	// Method is the name of the authentication method that reaches the tier.
	Method string
	// MaxAge is how long the tier stays held after authenticating to it.
	MaxAge time.Duration
	// ACR is the name used in machine-readable challenges; defaults to Name.
	ACR string
	// Label names the tier for people ("Security key"); pages fall back
	// to a name derived from the method when it is empty.
	Label string
}

// Sentinel errors, wrapped with the names involved.
var (
	ErrUnknownTier = errors.New("unknown tier")
	ErrBaseNotHeld = errors.New("base tier not held")
)

// Hierarchy is a validated forest of tiers. It is immutable once built.
type Hierarchy struct {
	tiers    map[string]*Tier
	children map[string][]string
	depth    map[string]int
	order    []string // declaration order
}

// New validates the tier definitions and builds the hierarchy. previous, when
// not nil, is the hierarchy of the configuration being replaced: a tier that
// existed there and is still named as a base here is reported as a removal
// of a base tier, as ActivID refuses to delete a parent policy.
func New(defs []Tier, previous *Hierarchy) (*Hierarchy, error) {
	h := &Hierarchy{
		tiers:    make(map[string]*Tier, len(defs)),
		children: make(map[string][]string),
		depth:    make(map[string]int, len(defs)),
	}
	for i := range defs {
		t := defs[i]
		if t.Name == "" {
			return nil, fmt.Errorf("tier #%d: missing name", i+1)
		}
		if !validName(t.Name) {
			return nil, fmt.Errorf("tier %q: name may contain only letters, digits, '-', '_' and '.'", t.Name)
		}
		if _, dup := h.tiers[t.Name]; dup {
			return nil, fmt.Errorf("tier %q: defined more than once", t.Name)
		}
		if t.Method == "" {
			return nil, fmt.Errorf("tier %q: missing method", t.Name)
		}
		if t.MaxAge <= 0 {
			return nil, fmt.Errorf("tier %q: max_age must be positive", t.Name)
		}
		if t.Base == t.Name {
			return nil, fmt.Errorf("tier %q: cannot be its own base", t.Name)
		}
		if t.ACR == "" {
			t.ACR = t.Name
		}
		h.tiers[t.Name] = &t
		h.order = append(h.order, t.Name)
	}
	for _, name := range h.order {
		t := h.tiers[name]
		if t.Base == "" {
			continue
		}
		if _, ok := h.tiers[t.Base]; !ok {
			if previous != nil && previous.Has(t.Base) {
				return nil, fmt.Errorf("cannot remove tier %s: it is the base of %s", t.Base, t.Name)
			}
			return nil, fmt.Errorf("tier %q: unknown base tier %q", t.Name, t.Base)
		}
		h.children[t.Base] = append(h.children[t.Base], t.Name)
	}
	for _, name := range h.order {
		d, err := h.computeDepth(name)
		if err != nil {
			return nil, err
		}
		h.depth[name] = d
	}
	return h, nil
}

func (h *Hierarchy) computeDepth(name string) (int, error) {
	seen := map[string]bool{}
	path := []string{name}
	d := 0
	for cur := h.tiers[name].Base; cur != ""; cur = h.tiers[cur].Base {
		if seen[cur] || cur == name {
			path = append(path, cur)
			return 0, fmt.Errorf("tier %q: base cycle %s", name, strings.Join(path, " -> "))
		}
		seen[cur] = true
		path = append(path, cur)
		d++
	}
	return d, nil
}

func validName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// Has reports whether the tier exists.
func (h *Hierarchy) Has(name string) bool {
	_, ok := h.tiers[name]
	return ok
}

// Get returns the tier definition.
func (h *Hierarchy) Get(name string) (Tier, bool) {
	t, ok := h.tiers[name]
	if !ok {
		return Tier{}, false
	}
	return *t, true
}

// Names returns the tier names in declaration order.
func (h *Hierarchy) Names() []string { return append([]string(nil), h.order...) }

// Depth is the number of bases below the tier (0 for a root).
func (h *Hierarchy) Depth(name string) int { return h.depth[name] }

// Chain returns the tiers from the root down to name, inclusive.
func (h *Hierarchy) Chain(name string) ([]string, error) {
	t, ok := h.tiers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTier, name)
	}
	chain := make([]string, h.depth[name]+1)
	for i := len(chain) - 1; i >= 0; i-- {
		chain[i] = t.Name
		if t.Base != "" {
			t = h.tiers[t.Base]
		}
	}
	return chain, nil
}

// Descendants returns every tier that has name below it, nearest first.
func (h *Hierarchy) Descendants(name string) []string {
	var out []string
	queue := append([]string(nil), h.children[name]...)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		out = append(out, n)
		queue = append(queue, h.children[n]...)
	}
	return out
}

// IsAbove reports whether upper has lower somewhere in its chain of bases.
func (h *Hierarchy) IsAbove(upper, lower string) bool {
	t, ok := h.tiers[upper]
	for ok && t.Base != "" {
		if t.Base == lower {
			return true
		}
		t, ok = h.tiers[t.Base]
	}
	return false
}

// Roots returns the root tiers, in declaration order.
func (h *Hierarchy) Roots() []string {
	var roots []string
	for _, n := range h.order {
		if h.tiers[n].Base == "" {
			roots = append(roots, n)
		}
	}
	return roots
}
