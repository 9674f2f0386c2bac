package caddymodule

import (
	"net/http"
	"path"
	"runtime"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Transaction sets are matched on every request, once per set, and most
// are nothing but path and method matchers. Caddy's MatchPath redoes per
// pattern, per request, what depends on the pattern alone (placeholders,
// '%', "//", the count of '*') and lower-cases and cleans the request path
// again for each pattern. compileMatcherSets does that work once, at
// provision, for the sets whose every matcher it can answer exactly as
// Caddy would; any other set keeps Caddy's matcher.
//
// Exactness is the point: a request Caddy would put in a set that the
// compiled form left out would skip the set's step-up. The code below
// replicates caddyhttp v2.11.9 (MatchPath.MatchWithError, MatchMethod,
// CleanPath, MatcherSets.AnyMatchWithError) branch for branch, and
// TestCompiledMatchersAgreeWithCaddy and FuzzCompiledMatchersAgreeWithCaddy
// compare the two on the same provisioned matchers; re-run the fuzz test
// when Caddy is upgraded.

// compileMatcherSets returns the match function of a transaction set:
// the compiled form when every matcher of every set is a path matcher with
// only plain patterns or a method matcher (compiled reports it), otherwise
// Caddy's own ms.AnyMatchWithError. The matchers must be provisioned:
// the compiled form reads the patterns as Caddy's Provision left them
// (lower-cased paths, upper-cased methods).
func compileMatcherSets(ms caddyhttp.MatcherSets) (match func(*http.Request) (bool, error), compiled bool) {
	// Caddy rewrites Windows paths (backslashes, trailing dots of each
	// segment) before matching; that is not replicated here.
	if runtime.GOOS == "windows" {
		return ms.AnyMatchWithError, false
	}
	sets := make(compiledSets, 0, len(ms))
	for _, mset := range ms {
		var cs compiledSet
		for _, m := range mset {
			// LoadModule gives the matchers as pointers (New returns
			// new(MatchPath)); anything else is left to Caddy.
			switch m := m.(type) {
			case *caddyhttp.MatchPath:
				p, ok := compilePath(m)
				if !ok {
					return ms.AnyMatchWithError, false
				}
				cs.paths = append(cs.paths, p)
			case *caddyhttp.MatchMethod:
				if m == nil {
					return ms.AnyMatchWithError, false
				}
				cs.methods = append(cs.methods, slices.Clone(*m))
			default:
				return ms.AnyMatchWithError, false
			}
		}
		sets = append(sets, cs)
	}
	return sets.match, true
}

// compiledSets is Caddy's MatcherSets: a request matches if it matches any
// set, and every request matches an empty list.
type compiledSets []compiledSet

// compiledSet is one MatcherSet: a request matches if it matches every
// matcher (so every request matches an empty set).
type compiledSet struct {
	methods [][]string     // each a MatchMethod: any of its methods
	paths   []compiledPath // each a MatchPath: any of its patterns
}

// compiledPath is one MatchPath.
type compiledPath []pathPattern

// patternKind is the branch of MatchPath.MatchWithError that a pattern
// takes; for a pattern without placeholders it depends on the pattern
// alone.
type patternKind uint8

const (
	matchAll       patternKind = iota // "*": every request, path unseen
	matchSubstring                    // "*x*", no other '*'
	matchSuffix                       // "*x", no other '*'
	matchPrefix                       // "x*", no other '*'
	matchExact                        // no glob character: path.Match is string equality
	matchGlob                         // anything else: path.Match
)

type pathPattern struct {
	kind patternKind
	// text is the literal part for substring, suffix and prefix, the
	// whole pattern for exact and glob.
	text string
}

// compilePath classifies a provisioned MatchPath's patterns, or reports
// that one takes a branch of Caddy's that is not replicated:
//   - '{': placeholders are replaced (and the result lower-cased) per
//     request, so the branch is only known then;
//   - '%': the pattern is compared with the escaped path, by different code;
//   - "//": the path is cleaned without merging slashes.
//
// Every other pattern is compared with the path lower-cased and cleaned
// with merged slashes, which is the same string for all of them.
func compilePath(m *caddyhttp.MatchPath) (compiledPath, bool) {
	if m == nil {
		return nil, false
	}
	out := make(compiledPath, 0, len(*m))
	for _, p := range *m {
		if strings.ContainsAny(p, "{%") || strings.Contains(p, "//") {
			return nil, false
		}
		// The order and conditions are those of MatchWithError.
		stars := strings.Count(p, "*")
		switch {
		case p == "*":
			out = append(out, pathPattern{kind: matchAll})
		case stars == 2 && strings.HasPrefix(p, "*") && strings.HasSuffix(p, "*"):
			out = append(out, pathPattern{kind: matchSubstring, text: p[1 : len(p)-1]})
		case stars == 1 && strings.HasPrefix(p, "*"):
			out = append(out, pathPattern{kind: matchSuffix, text: p[1:]})
		case stars == 1 && strings.HasSuffix(p, "*"):
			out = append(out, pathPattern{kind: matchPrefix, text: p[:len(p)-1]})
		case !strings.ContainsAny(p, `*?[\`):
			// Without '*', '?', '[' or '\' path.Match compares byte
			// for byte, and no pattern can be malformed.
			out = append(out, pathPattern{kind: matchExact, text: p})
		default:
			out = append(out, pathPattern{kind: matchGlob, text: p})
		}
	}
	return out, true
}

// match is MatcherSets.AnyMatchWithError for compiled sets; it never
// fails, as Caddy's path and method matchers never do. (Caddy's path
// matcher panics on a request without a replacer in its context, which
// Caddy's server always puts there; this one needs none.)
func (cs compiledSets) match(r *http.Request) (bool, error) {
	var p requestPath
	for i := range cs {
		if cs[i].matches(r, &p) {
			return true, nil
		}
	}
	return len(cs) == 0, nil
}

func (s *compiledSet) matches(r *http.Request, p *requestPath) bool {
	// A conjunction of pure matchers: the order does not change the
	// answer, and the methods are cheaper.
	for _, m := range s.methods {
		// MatchMethod compares exactly: its Provision upper-cased the
		// methods, a request's method is compared as sent.
		if !slices.Contains(m, r.Method) {
			return false
		}
	}
	for _, m := range s.paths {
		if !m.matches(r, p) {
			return false
		}
	}
	return true
}

func (m compiledPath) matches(r *http.Request, p *requestPath) bool {
	for _, pat := range m {
		if pat.kind == matchAll {
			return true
		}
		reqPath := p.get(r)
		switch pat.kind {
		case matchSubstring:
			if strings.Contains(reqPath, pat.text) {
				return true
			}
		case matchSuffix:
			if strings.HasSuffix(reqPath, pat.text) {
				return true
			}
		case matchPrefix:
			if strings.HasPrefix(reqPath, pat.text) {
				return true
			}
		case matchExact:
			if reqPath == pat.text {
				return true
			}
		case matchGlob:
			// An error is a malformed pattern; Caddy ignores it too.
			if ok, _ := path.Match(pat.text, reqPath); ok {
				return true
			}
		}
	}
	return false
}

// requestPath is the request path as MatchPath compares it with plain
// patterns, computed on first use and then shared by every pattern of
// every set of one call.
type requestPath struct {
	cleaned string
	done    bool
}

func (p *requestPath) get(r *http.Request) string {
	if !p.done {
		p.cleaned, p.done = cleanLowerPath(r.URL.Path), true
	}
	return p.cleaned
}

// cleanLowerPath is the request path as MatchPath compares it with a
// pattern without "//" or '%' (on systems other than Windows). It returns p
// itself, without allocating, when p is already lower-case and clean,
// which is the usual request and is checked in one pass; CleanPath would
// copy a path with a trailing slash.
func cleanLowerPath(p string) string {
	if isLowerClean(p) {
		return p
	}
	return caddyhttp.CleanPath(strings.ToLower(p), true)
}

// isLowerClean reports whether p is left as it is by strings.ToLower (ASCII
// without upper case) and by CleanPath: rooted, with no empty, "." or ".."
// segment except the empty one after a trailing slash, which CleanPath
// keeps (path.Clean changes a rooted path exactly when it has one of them
// or a trailing slash).
func isLowerClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	start := 1 // of the current segment
	for i := 1; i < len(p); i++ {
		c := p[i]
		if c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			return false
		}
		if c == '/' {
			if !isCleanSegment(p[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return start == len(p) || isCleanSegment(p[start:])
}

func isCleanSegment(s string) bool { return s != "" && s != "." && s != ".." }
