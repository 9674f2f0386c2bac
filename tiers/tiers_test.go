package tiers

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// login -> otp -> key, login -> token; a second root "partner".
func demo(t *testing.T) *Hierarchy {
	t.Helper()
	h, err := New([]Tier{
		{Name: "login", Method: "password", MaxAge: 8 * time.Hour},
		{Name: "otp", Base: "login", Method: "totp", MaxAge: 30 * time.Minute},
		{Name: "key", Base: "otp", Method: "webauthn", MaxAge: 5 * time.Minute, ACR: "phr"},
		{Name: "token", Base: "login", Method: "radius", MaxAge: 15 * time.Minute},
		{Name: "partner", Method: "external", MaxAge: time.Hour},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNewRejectsBrokenHierarchies(t *testing.T) {
	prev, err := New([]Tier{
		{Name: "login", Method: "password", MaxAge: time.Hour},
		{Name: "otp", Base: "login", Method: "totp", MaxAge: time.Hour},
		{Name: "key", Base: "otp", Method: "webauthn", MaxAge: time.Hour},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		defs     []Tier
		previous *Hierarchy
		want     string
	}{
		{"missing name", []Tier{{Method: "password", MaxAge: time.Hour}}, nil, "tier #1: missing name"},
		{"bad name", []Tier{{Name: "a b", Method: "password", MaxAge: time.Hour}}, nil, `tier "a b": name may contain`},
		{"duplicate", []Tier{{Name: "a", Method: "password", MaxAge: time.Hour}, {Name: "a", Method: "totp", MaxAge: time.Hour}}, nil, `tier "a": defined more than once`},
		{"missing method", []Tier{{Name: "a", MaxAge: time.Hour}}, nil, `tier "a": missing method`},
		{"zero max age", []Tier{{Name: "a", Method: "password"}}, nil, `tier "a": max_age must be positive`},
		{"self base", []Tier{{Name: "a", Base: "a", Method: "password", MaxAge: time.Hour}}, nil, `tier "a": cannot be its own base`},
		{"unknown base", []Tier{{Name: "a", Base: "nope", Method: "password", MaxAge: time.Hour}}, nil, `tier "a": unknown base tier "nope"`},
		{"cycle", []Tier{
			{Name: "a", Base: "c", Method: "password", MaxAge: time.Hour},
			{Name: "b", Base: "a", Method: "totp", MaxAge: time.Hour},
			{Name: "c", Base: "b", Method: "totp", MaxAge: time.Hour},
		}, nil, `tier "a": base cycle a -> c -> b -> a`},
		{"removed base", []Tier{
			{Name: "login", Method: "password", MaxAge: time.Hour},
			{Name: "key", Base: "otp", Method: "webauthn", MaxAge: time.Hour},
		}, prev, "cannot remove tier otp: it is the base of key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.defs, tt.previous)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestRemovingALeafTierIsAllowed(t *testing.T) {
	prev := demo(t)
	if _, err := New([]Tier{
		{Name: "login", Method: "password", MaxAge: time.Hour},
		{Name: "otp", Base: "login", Method: "totp", MaxAge: time.Hour},
	}, prev); err != nil {
		t.Fatalf("removing leaf tiers key and token should be allowed: %v", err)
	}
}

func TestChainAndStructure(t *testing.T) {
	h := demo(t)
	tests := []struct {
		tier  string
		chain []string
		depth int
		root  string
	}{
		{"login", []string{"login"}, 0, "login"},
		{"otp", []string{"login", "otp"}, 1, "login"},
		{"key", []string{"login", "otp", "key"}, 2, "login"},
		{"token", []string{"login", "token"}, 1, "login"},
		{"partner", []string{"partner"}, 0, "partner"},
	}
	for _, tt := range tests {
		chain, err := h.Chain(tt.tier)
		if err != nil || !reflect.DeepEqual(chain, tt.chain) {
			t.Errorf("Chain(%s) = %v, %v; want %v", tt.tier, chain, err, tt.chain)
		}
		if d := h.Depth(tt.tier); d != tt.depth {
			t.Errorf("Depth(%s) = %d, want %d", tt.tier, d, tt.depth)
		}
		if r := h.Root(tt.tier); r != tt.root {
			t.Errorf("Root(%s) = %q, want %q", tt.tier, r, tt.root)
		}
	}
	if _, err := h.Chain("nope"); !errors.Is(err, ErrUnknownTier) {
		t.Errorf("Chain(nope) error = %v", err)
	}
	if got := h.Descendants("login"); !reflect.DeepEqual(got, []string{"otp", "token", "key"}) {
		t.Errorf("Descendants(login) = %v", got)
	}
	if !h.IsAbove("key", "login") || h.IsAbove("token", "otp") || h.IsAbove("login", "login") {
		t.Error("IsAbove wrong")
	}
	if got := h.Roots(); !reflect.DeepEqual(got, []string{"login", "partner"}) {
		t.Errorf("Roots = %v", got)
	}
	if tier, _ := h.Get("otp"); tier.ACR != "otp" {
		t.Errorf("ACR default = %q, want tier name", tier.ACR)
	}
	if tier, _ := h.Get("key"); tier.ACR != "phr" {
		t.Errorf("ACR = %q", tier.ACR)
	}
}

// climb pushes the chain to target at the given offsets from t0.
func climb(t *testing.T, h *Hierarchy, at map[string]time.Duration, names ...string) Stack {
	t.Helper()
	var s Stack
	var err error
	for _, n := range names {
		now := t0.Add(at[n])
		s, err = s.Push(h, Level{Tier: n, Credential: "alice", At: now}, now)
		if err != nil {
			t.Fatalf("push %s: %v", n, err)
		}
	}
	return s
}

func TestPushRequiresBaseHeldAndFresh(t *testing.T) {
	h := demo(t)
	tests := []struct {
		name    string
		held    []string
		push    string
		at      time.Duration // when the push happens
		wantErr error
	}{
		{"root from nothing", nil, "login", 0, nil},
		{"second level over root", []string{"login"}, "otp", time.Minute, nil},
		{"skip a level", []string{"login"}, "key", time.Minute, ErrBaseNotHeld},
		{"nothing held", nil, "otp", 0, ErrBaseNotHeld},
		{"base lapsed", []string{"login", "otp"}, "key", 31 * time.Minute, ErrBaseNotHeld},
		{"base at edge of max age", []string{"login", "otp"}, "key", 30*time.Minute - time.Nanosecond, nil},
		{"other branch", []string{"login", "otp"}, "token", time.Minute, nil},
		{"unknown tier", []string{"login"}, "nope", 0, ErrUnknownTier},
		{"second root alongside", []string{"login"}, "partner", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := climb(t, h, nil, tt.held...)
			now := t0.Add(tt.at)
			out, err := s.Push(h, Level{Tier: tt.push, At: now}, now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !reflect.DeepEqual(out, s) {
					t.Fatalf("failed push changed the stack: %v", out.Names())
				}
				return
			}
			if l, ok := out.Level(tt.push); !ok || !l.At.Equal(now) {
				t.Fatalf("pushed level missing or wrong time: %+v", l)
			}
		})
	}
}

func TestPushRefreshesWithoutDuplicatingAndKeepsUpperLevels(t *testing.T) {
	h := demo(t)
	s := climb(t, h, map[string]time.Duration{"key": time.Minute}, "login", "otp", "key")
	now := t0.Add(2 * time.Minute)
	out, err := s.Push(h, Level{Tier: "otp", At: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Names(); !reflect.DeepEqual(got, []string{"login", "otp", "key"}) {
		t.Fatalf("names = %v", got)
	}
	if l, _ := out.Level("otp"); !l.At.Equal(now) {
		t.Fatalf("otp not refreshed")
	}
	if l, _ := s.Level("otp"); !l.At.Equal(t0) {
		t.Fatalf("push mutated its receiver")
	}
	if l, _ := out.Level("otp"); l.Base != "login" || l.Method != "totp" {
		t.Fatalf("level base/method not recorded: %+v", l)
	}
}

func TestReconcileLapsesCascade(t *testing.T) {
	h := demo(t)
	at := map[string]time.Duration{"otp": 10 * time.Minute, "key": 12 * time.Minute, "token": 13 * time.Minute}
	s := climb(t, h, at, "login", "otp", "key", "token")
	tests := []struct {
		name  string
		at    time.Duration
		held  []string
		drops []Drop
	}{
		{"all fresh", 14 * time.Minute, []string{"login", "otp", "key", "token"}, nil},
		{"key lapses alone", 17 * time.Minute, []string{"login", "otp", "token"}, []Drop{{"key", ReasonLapsed}}},
		{"token lapses at exactly max age", 28 * time.Minute, []string{"login", "otp"}, []Drop{{"key", ReasonLapsed}, {"token", ReasonLapsed}}},
		{"otp lapses", 41 * time.Minute, []string{"login"}, []Drop{{"otp", ReasonLapsed}, {"key", ReasonLapsed}, {"token", ReasonLapsed}}},
		{"login lapses takes everything", 8 * time.Hour, []string{}, []Drop{{"login", ReasonLapsed}, {"otp", ReasonLapsed}, {"key", ReasonLapsed}, {"token", ReasonLapsed}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, drops := s.Reconcile(h, t0.Add(tt.at))
			if got := out.Names(); !reflect.DeepEqual(got, tt.held) {
				t.Errorf("held = %v, want %v", got, tt.held)
			}
			if !sameDrops(drops, tt.drops) {
				t.Errorf("drops = %v, want %v", drops, tt.drops)
			}
		})
	}
}

func TestReconcileCascadesWhenABaseLapsesBeforeItsChild(t *testing.T) {
	h, err := New([]Tier{
		{Name: "login", Method: "password", MaxAge: time.Hour},
		{Name: "otp", Base: "login", Method: "totp", MaxAge: 10 * time.Minute},
		{Name: "key", Base: "otp", Method: "webauthn", MaxAge: time.Hour},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := climb(t, h, map[string]time.Duration{"key": 5 * time.Minute}, "login", "otp", "key")
	out, drops := s.Reconcile(h, t0.Add(11*time.Minute))
	if got := out.Names(); !reflect.DeepEqual(got, []string{"login"}) {
		t.Fatalf("held = %v", got)
	}
	if !sameDrops(drops, []Drop{{"otp", ReasonLapsed}, {"key", ReasonCascade}}) {
		t.Fatalf("drops = %v", drops)
	}
}

func TestReconcileAfterReload(t *testing.T) {
	old := demo(t)
	s := climb(t, old, nil, "login", "otp", "key", "token")
	tests := []struct {
		name  string
		defs  []Tier
		held  []string
		drops []Drop
	}{
		{"same config", []Tier{
			{Name: "login", Method: "password", MaxAge: 8 * time.Hour},
			{Name: "otp", Base: "login", Method: "totp", MaxAge: 30 * time.Minute},
			{Name: "key", Base: "otp", Method: "webauthn", MaxAge: 5 * time.Minute},
			{Name: "token", Base: "login", Method: "radius", MaxAge: 15 * time.Minute},
		}, []string{"login", "otp", "key", "token"}, nil},
		{"leaf removed", []Tier{
			{Name: "login", Method: "password", MaxAge: 8 * time.Hour},
			{Name: "otp", Base: "login", Method: "totp", MaxAge: 30 * time.Minute},
			{Name: "key", Base: "otp", Method: "webauthn", MaxAge: 5 * time.Minute},
		}, []string{"login", "otp", "key"}, []Drop{{"token", ReasonRemoved}}},
		{"key re-parented onto login", []Tier{
			{Name: "login", Method: "password", MaxAge: 8 * time.Hour},
			{Name: "otp", Base: "login", Method: "totp", MaxAge: 30 * time.Minute},
			{Name: "key", Base: "login", Method: "webauthn", MaxAge: 5 * time.Minute},
			{Name: "token", Base: "login", Method: "radius", MaxAge: 15 * time.Minute},
		}, []string{"login", "otp", "token"}, []Drop{{"key", ReasonReparented}}},
		{"max age shortened", []Tier{
			{Name: "login", Method: "password", MaxAge: 8 * time.Hour},
			{Name: "otp", Base: "login", Method: "totp", MaxAge: 30 * time.Second},
			{Name: "key", Base: "otp", Method: "webauthn", MaxAge: 5 * time.Minute},
			{Name: "token", Base: "login", Method: "radius", MaxAge: 15 * time.Minute},
		}, []string{"login", "token"}, []Drop{{"otp", ReasonLapsed}, {"key", ReasonCascade}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(tt.defs, old)
			if err != nil {
				t.Fatal(err)
			}
			out, drops := s.Reconcile(h, t0.Add(time.Minute))
			if got := out.Names(); !reflect.DeepEqual(got, tt.held) {
				t.Errorf("held = %v, want %v", got, tt.held)
			}
			if !sameDrops(drops, tt.drops) {
				t.Errorf("drops = %v, want %v", drops, tt.drops)
			}
		})
	}
}

func TestLogOffCascade(t *testing.T) {
	h := demo(t)
	s := climb(t, h, nil, "login", "otp", "key", "token")
	tests := []struct {
		name   string
		stack  Stack
		tier   string
		held   []string
		closed []string
		ended  bool
	}{
		// ActivID: logging off at the child returns the user to the parent.
		{"top level", s, "key", []string{"login", "otp", "token"}, []string{"key"}, false},
		// Logging off at the second level closes the third too.
		{"middle level", s, "otp", []string{"login", "token"}, []string{"otp", "key"}, false},
		{"sibling branch", s, "token", []string{"login", "otp", "key"}, []string{"token"}, false},
		// Logging off at the first level closes the session.
		{"root", s, "login", []string{}, []string{"login", "otp", "key", "token"}, true},
		{"not held", climb(t, h, nil, "login"), "key", []string{"login"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, closed, ended := tt.stack.LogOff(h, tt.tier)
			if got := out.Names(); !reflect.DeepEqual(got, tt.held) {
				t.Errorf("held = %v, want %v", got, tt.held)
			}
			if !reflect.DeepEqual(closed, tt.closed) {
				t.Errorf("closed = %v, want %v", closed, tt.closed)
			}
			if ended != tt.ended {
				t.Errorf("ended = %v", ended)
			}
		})
	}
	if len(s) != 4 {
		t.Fatal("LogOff mutated its receiver")
	}
}

func TestNextWalksTheChain(t *testing.T) {
	h := demo(t)
	at := map[string]time.Duration{"otp": time.Minute, "key": 2 * time.Minute}
	tests := []struct {
		name   string
		held   []string
		target string
		now    time.Duration
		maxAge time.Duration
		want   string
	}{
		{"nothing held", nil, "key", 3 * time.Minute, 0, "login"},
		{"root held", []string{"login"}, "key", 3 * time.Minute, 0, "otp"},
		{"two held", []string{"login", "otp"}, "key", 3 * time.Minute, 0, "key"},
		{"all held", []string{"login", "otp", "key"}, "key", 3 * time.Minute, 0, ""},
		{"stricter set max age", []string{"login", "otp", "key"}, "key", 3 * time.Minute, 30 * time.Second, "key"},
		{"stricter bound does not apply to bases", []string{"login", "otp", "key"}, "key", 3 * time.Minute, 2 * time.Minute, ""},
		{"top lapsed", []string{"login", "otp", "key"}, "key", 8 * time.Minute, 0, "key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := climb(t, h, at, tt.held...)
			got, err := s.Next(h, tt.target, t0.Add(tt.now), tt.maxAge)
			if err != nil || got != tt.want {
				t.Fatalf("Next = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestHighestAndRemaining(t *testing.T) {
	h := demo(t)
	if got := (Stack{}).Highest(h); got != "" {
		t.Errorf("Highest(empty) = %q", got)
	}
	s := climb(t, h, nil, "login", "token", "otp")
	if got := s.Highest(h); got != "otp" {
		t.Errorf("Highest = %q, want the latest of the deepest", got)
	}
	if got := s.Remaining(h, "otp", t0.Add(10*time.Minute)); got != 20*time.Minute {
		t.Errorf("Remaining = %v", got)
	}
	if got := s.Remaining(h, "key", t0); got != 0 {
		t.Errorf("Remaining(not held) = %v", got)
	}
}

func sameDrops(a, b []Drop) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[Drop]int{}
	for _, d := range a {
		count[d]++
	}
	for _, d := range b {
		count[d]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestHoldsEndsAtExactlyTheStricterMaxAge(t *testing.T) {
	h := demo(t)
	s := climb(t, h, nil, "login", "otp")
	if !s.Holds(h, "otp", t0.Add(time.Minute-time.Nanosecond), time.Minute) {
		t.Error("otp not held just before the stricter bound")
	}
	if s.Holds(h, "otp", t0.Add(time.Minute), time.Minute) {
		t.Error("otp still held at exactly the stricter bound")
	}
}

func TestReconcileDropsALevelWhoseBaseIsNotInTheStack(t *testing.T) {
	h := demo(t)
	// A stack the code never builds (Push refuses it), as a store could
	// hand back: otp without its base.
	s := Stack{{Tier: "otp", Base: "login", Method: "totp", At: t0}}
	out, drops := s.Reconcile(h, t0.Add(time.Minute))
	if len(out) != 0 {
		t.Errorf("held = %v, want nothing", out.Names())
	}
	if !sameDrops(drops, []Drop{{"otp", ReasonCascade}}) {
		t.Errorf("drops = %v", drops)
	}
}

// consistent is Reconcile's fast path, taken on every request with a
// session: it must accept an unchanged stack (whatever the position of a
// level's base) and refuse every stack that Reconcile would change.
func TestConsistentAcceptsOnlyAStackReconcileKeeps(t *testing.T) {
	h := demo(t)
	s := climb(t, h, nil, "login", "otp", "key", "partner")
	tests := []struct {
		name  string
		stack Stack
		at    time.Duration
		want  bool
	}{
		{"unchanged", s, time.Minute, true},
		{"base first", climb(t, h, nil, "login", "token"), time.Minute, true},
		{"empty", Stack{}, time.Minute, true},
		{"unknown tier", Stack{s[0], {Tier: "gone", At: t0}}, time.Minute, false},
		{"re-parented", Stack{s[0], {Tier: "otp", Base: "partner", At: t0}}, time.Minute, false},
		{"lapsed", s, 5 * time.Minute, false},
		{"base missing", Stack{s[1]}, time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.stack.consistent(h, t0.Add(tt.at)); got != tt.want {
				t.Fatalf("consistent = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPushRefreshesTheRootInPlace(t *testing.T) {
	h := demo(t)
	s := climb(t, h, nil, "login", "otp")
	now := t0.Add(time.Minute)
	out, err := s.Push(h, Level{Tier: "login", At: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Names(); !reflect.DeepEqual(got, []string{"login", "otp"}) {
		t.Fatalf("names = %v", got)
	}
	if l, _ := out.Level("login"); !l.At.Equal(now) {
		t.Fatal("login not refreshed")
	}
}

func TestHighestAndRemainingOfARootAlone(t *testing.T) {
	h := demo(t)
	s := climb(t, h, nil, "login")
	if got := s.Highest(h); got != "login" {
		t.Errorf("Highest = %q, want login", got)
	}
	if got := s.Remaining(h, "login", t0.Add(time.Hour)); got != 7*time.Hour {
		t.Errorf("Remaining(login) = %v, want 7h", got)
	}
	if got := s.Remaining(h, "login", t0.Add(9*time.Hour)); got != 0 {
		t.Errorf("Remaining(lapsed login) = %v, want 0", got)
	}
}
