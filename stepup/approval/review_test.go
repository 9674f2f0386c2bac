package approval

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FINDING (low): clip cuts comments, justifications and break-glass
// reasons at 1000 bytes, in the middle of a character, so the stored,
// audited and notified text is not UTF-8 (JSON encoders then replace the
// tail with U+FFFD, so audit, webhook and page disagree on the text);
// invalid input is kept as sent. Cut on a rune boundary and replace
// invalid bytes (strings.ToValidUTF8), as stepup/formview.go's shorten
// does.
func TestReviewClipKeepsTextValidUTF8(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("a", maxText-1) + "é",
		"ok \xff\xfe bytes",
	} {
		if out := clip(in); !utf8.ValidString(out) {
			t.Errorf("clip(%q…) = %q…, not valid UTF-8", in[:8], out[max(0, len(out)-8):])
		}
	}
}

// A page that reads a request again between a refused decision and its
// redirect may find it gone (withdrawn, expired, the store down): naming
// the approver tier then must not panic.
func TestApproverTierWithoutAPolicyIsTheSetsTier(t *testing.T) {
	q := &Request{Tier: "otp"}
	if got := q.ApproverTier(nil); got != "otp" {
		t.Fatalf("ApproverTier(nil) = %q, want the set's tier", got)
	}
	if got := q.ApproverTier(&Policy{ApproverTier: "key"}); got != "key" {
		t.Fatalf("ApproverTier = %q, want the policy's", got)
	}
}
