package approval

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Explanation is what a policy would do with an action, evaluated without
// side effects: no rate counter spent, no request created, nobody told.
type Explanation struct {
	Policy string `json:"policy"`
	Set    string `json:"set"`
	// Conditions, each with its result now (rate: whether one more action
	// fits the window).
	Conditions   []ConditionResult `json:"conditions"`
	ConditionsOK bool              `json:"conditions_ok"`
	// Outcome: refused, auto_approved, granted (a duration grant covers
	// the set), or approval_required.
	Outcome string `json:"outcome"`
	// Detail says it in words.
	Detail        string     `json:"detail"`
	Approvers     []string   `json:"approvers,omitempty"`
	Require       int        `json:"require,omitempty"`
	ApproverTier  string     `json:"approver_tier,omitempty"`
	Justification string     `json:"justification,omitempty"`
	GrantUntil    *time.Time `json:"grant_until,omitempty"`
}

// Outcomes of an explanation.
const (
	OutcomeRefused          = "refused"
	OutcomeAutoApproved     = "auto_approved"
	OutcomeGranted          = "granted"
	OutcomeApprovalRequired = "approval_required"
)

// Explain evaluates the set's policy for an action of user (with roles)
// from clientIP at now, as the approval stage would, reading but never
// changing the store.
func (s *Service) Explain(ctx context.Context, set *stepup.TransactionSet, user string, roles []string, clientIP string, now time.Time) (*Explanation, error) {
	if s == nil || s.Policies[set.Approval] == nil {
		return nil, fmt.Errorf("unknown approval policy %q", set.Approval)
	}
	p := s.Policies[set.Approval]
	x := &Explanation{Policy: p.Name, Set: set.Name, Approvers: p.ApproverNames(), Require: max(p.Require, 1), Justification: p.Justification}
	x.ApproverTier = p.ApproverTier
	if x.ApproverTier == "" {
		x.ApproverTier = set.Tier
	}
	if user == "" {
		x.Outcome, x.Detail = OutcomeRefused, "an approval needs to know who asks: sign in first"
		return x, nil
	}
	store := s.Engine.Store
	// In the order the stage decides: the conditions hold first, even for
	// a grant; then a duration grant; then the rate, which a grant does
	// not spend.
	x.Conditions = p.staticConditions(roles, clientIP, now, set.Risk)
	if firstFailed(x.Conditions) == "" {
		if id, err := store.Get(ctx, keyDuration+user+":"+p.Name+":"+set.Name); err == nil {
			if q, _, err := s.Get(ctx, string(id)); err == nil && q.Status == StatusApproved {
				until := q.GrantUntil
				x.GrantUntil = &until
				x.ConditionsOK = true
				x.Outcome, x.Detail = OutcomeGranted, "a duration grant covers this set until "+until.UTC().Format(time.RFC3339)
				return x, nil
			}
		} else if !errors.Is(err, stepup.ErrNotFound) {
			return nil, err
		}
	}
	if p.Rate != nil {
		used := int64(0)
		if raw, err := store.Get(ctx, keyRate+p.Name+":"+user); err == nil {
			used, _ = strconv.ParseInt(string(raw), 10, 64)
		} else if !errors.Is(err, stepup.ErrNotFound) {
			return nil, err
		}
		x.Conditions = append(x.Conditions, ConditionResult{Name: CondRate, OK: used+1 <= int64(p.Rate.N),
			Detail: fmt.Sprintf("at most %d such actions per %s (%d used in the current window)", p.Rate.N, p.Rate.Per, used)})
	}
	x.ConditionsOK = true
	var failed []string
	for _, c := range x.Conditions {
		if !c.OK {
			x.ConditionsOK = false
			failed = append(failed, c.Name)
		}
	}
	switch {
	case !x.ConditionsOK:
		x.Outcome, x.Detail = OutcomeRefused, "condition failed: "+strings.Join(failed, ", ")
	case p.autoApproves(set.Risk):
		x.Outcome, x.Detail = OutcomeAutoApproved, "risk "+set.Risk+" is at most "+p.AutoApproveMaxRisk+": approved by the policy"
	default:
		x.Outcome = OutcomeApprovalRequired
		x.Detail = fmt.Sprintf("needs %d approval(s) from %s, holding %s", x.Require, strings.Join(x.Approvers, ", "), x.ApproverTier)
		if p.Radius != nil && len(p.Approvers) == 0 {
			x.Detail = "needs the approval service (RADIUS) to approve"
		}
		if p.Justification == "required" {
			x.Detail += "; a justification is required"
		}
	}
	return x, nil
}
