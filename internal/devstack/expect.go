package devstack

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
)

// Outcome is what a run over testdata/ must produce for one
// (request, user, device): its stage, outcome and reason.
type Outcome struct {
	Stage, Outcome, Reason string
}

// TestdataOutcomes is the one truth about testdata/: the delivery events
// dispatch must produce from requests.jsonl once registry has applied
// devices.jsonl, keyed "request/user/device". A key holds several outcomes
// only for r-3, which was submitted twice. The validation reasons of bad-*
// requests are left out (the dead letters carry them verbatim).
func TestdataOutcomes() map[string][]Outcome {
	sent := []Outcome{{"send", "sent", ""}}
	return map[string][]Outcome{
		"r-1/u1/d1": sent, "r-1/u1/d2": sent, "r-1/u2/d3": sent,
		"r-1/u3/":   {{"filter", "dropped", "quiet_hours"}},
		"r-1/u4/d5": sent, // android, through FCM
		"r-1/u5/d6": {{"send", "failed", "Unregistered"}},
		"r-1/u6/":   {{"enrich", "dropped", "no_device"}},
		"r-1/u9/":   {{"enrich", "dropped", "no_device"}},
		// realtime: quiet hours do not apply; churned users are excluded by the expression
		"r-2/u1/d1": sent, "r-2/u1/d2": sent, "r-2/u2/d3": sent, "r-2/u4/d5": sent,
		// r-3 was submitted twice (same key, so in order): the second copy is a duplicate
		"r-3/u2/d3": {{"send", "dropped", "duplicate"}, {"send", "sent", ""}},
		"r-3//d404": {{"expand", "dropped", "no_device"}},
		"r-4/u8/d9": sent,
		"r-4//":     {{"expand", "dropped", "no_device"}}, // the phone number u8 replaced
		"r-5/u2/":   {{"filter", "dropped", "opt_out"}},
		"r-5/u7/d8": sent,
		"r-6/u1/d1": sent, "r-6/u1/d2": sent, "r-6/u2/d3": sent,
		"r-6/u3/":   {{"filter", "dropped", "quiet_hours"}},
		"r-6/u4/d5": sent, "r-6/u7/d8": sent, "r-6/u8/d9": sent,
		"r-7/u7/d8": sent, "r-7/u8/d9": sent,
		"r-8//":   {{"expand", "dropped", "unknown_app"}},
		"bad-1//": {{"validate", "dropped", ""}},
		"bad-2//": {{"validate", "dropped", ""}},
		"bad-3//": {{"validate", "dropped", ""}},
	}
}

// CheckTestdata compares the delivery events of a dispatch run over
// testdata/ with TestdataOutcomes, and the providers of st with the sent
// events: each accepted exactly its platform's sent notifications, and APNs
// was asked nothing else but the tokens it answered 410 for.
func CheckTestdata(t testing.TB, st *Stack, events []pushflow.DeliveryEvent) {
	t.Helper()
	got := map[string][]Outcome{}
	sent := map[string]int64{}
	var unregistered int64
	for _, ev := range events {
		k := ev.RequestID + "/" + ev.UserID + "/" + ev.DeviceID
		o := Outcome{ev.Stage, ev.Outcome, ev.Reason}
		if strings.HasPrefix(ev.RequestID, "bad-") {
			o.Reason = ""
		}
		got[k] = append(got[k], o)
		switch {
		case ev.Outcome == pushflow.OutcomeSent:
			sent[ev.Platform]++
			if ev.ProviderID == "" || ev.Attempts < 1 {
				t.Errorf("sent event %s has provider_id %q attempts %d, want a provider id and >= 1", k, ev.ProviderID, ev.Attempts)
			}
		case ev.Reason == "Unregistered":
			unregistered++
		}
	}
	for _, os := range got {
		sort.Slice(os, func(i, j int) bool { return fmt.Sprint(os[i]) < fmt.Sprint(os[j]) })
	}
	want := TestdataOutcomes()
	// Order-dependent: r-1 and r-6 run concurrently, so u5's token may
	// already be removed by r-1's 410 cleanup when r-6 reaches u5; and u6,
	// whose only device was unregistered, is listed by the broadcast only
	// while the registry keeps it in the app's user set.
	if _, ok := got["r-6/u5/d6"]; ok {
		want["r-6/u5/d6"] = []Outcome{{"send", "failed", "Unregistered"}}
	} else {
		want["r-6/u5/"] = []Outcome{{"enrich", "dropped", "no_device"}}
	}
	if _, ok := got["r-6/u6/"]; ok {
		want["r-6/u6/"] = []Outcome{{"enrich", "dropped", "no_device"}}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delivery events (-want +got):\n%s", diff)
	}
	if got, want := st.APNs.Count(), sent[pushflow.PlatformIOS]; got != want {
		t.Errorf("APNs server accepted %d notifications, want %d (the sent ios events)", got, want)
	}
	if got, want := st.APNs.Requests(), sent[pushflow.PlatformIOS]+unregistered; got != want {
		t.Errorf("APNs server received %d requests, want %d (sent ios + Unregistered events)", got, want)
	}
	if got, want := st.FCM.Count(), sent[pushflow.PlatformAndroid]; got != want || want == 0 {
		t.Errorf("FCM server accepted %d notifications, want %d (the sent android events, > 0)", got, want)
	}
}
