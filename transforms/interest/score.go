package interest

import "github.com/pushflow/pushflow"

// DefaultDecay is the weight of the previous score in Score.
const DefaultDecay = 0.8

// Engaged reports whether a click action counts as engagement: opened and
// clicked do; received and dismissed do not.
func Engaged(action string) bool {
	return action == pushflow.ActionOpened || action == pushflow.ActionClicked
}

// Score returns a user's interest score in a category after a window in
// which sent deliveries went out and engaged of them were opened or clicked:
//
//	new = decay·old + (1−decay)·engaged/sent
//
// With no previous score (hasOld false) the window's rate is the score:
// there is nothing to decay from, and taking an absent score as 0 would
// make every new user look uninterested for many windows. engaged is
// clamped to [0, sent]; with sent ≤ 0 there is no evidence and the score is
// old (0 without one). decay is in [0, 1).
func Score(old float64, hasOld bool, engaged, sent int, decay float64) float64 {
	if sent <= 0 {
		return old
	}
	engaged = min(max(engaged, 0), sent)
	rate := float64(engaged) / float64(sent)
	if !hasOld {
		return rate
	}
	return decay*old + (1-decay)*rate
}
