package pace

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// tinyRequests returns n one-user requests, round-robin over campaigns:
// request i is "<campaign>-r<i>", one batch with the user "<id>-u0".
func tinyRequests(campaigns []string, from, n int) []recipient.Batch {
	out := make([]recipient.Batch, 0, n)
	for i := from; i < from+n; i++ {
		c := campaigns[i%len(campaigns)]
		out = append(out, batches(fmt.Sprintf("%s-r%d", c, i), c, 1, 1)...)
	}
	return out
}

// usersOf lists the users of batches bs of campaign c, in order.
func usersOf(bs []recipient.Batch, c string) []string {
	var us []string
	for _, b := range bs {
		if b.Request.Req.Campaign == c {
			for _, u := range b.Recipients {
				us = append(us, u.UserID)
			}
		}
	}
	return us
}

// released returns the batches of rs.
func released(rs []release) []recipient.Batch {
	bs := make([]recipient.Batch, len(rs))
	for i, r := range rs {
		bs[i] = r.Batch
	}
	return bs
}

// checkReleases checks every released batch is a non-empty piece of one
// request (its users named after it), and that every campaign's users came
// out exactly once, in arrival order.
func checkReleases(t *testing.T, in []recipient.Batch, out []release, campaigns ...string) {
	t.Helper()
	for _, r := range out {
		if len(r.Batch.Recipients) == 0 {
			t.Errorf("released an empty batch of %s", r.Batch.Request.Req.ID)
		}
		for _, u := range r.Batch.Recipients {
			if !strings.HasPrefix(u.UserID, r.Batch.Request.Req.ID+"-u") {
				t.Fatalf("user %s released with request %s", u.UserID, r.Batch.Request.Req.ID)
			}
		}
	}
	for _, c := range campaigns {
		if diff := cmp.Diff(usersOf(in, c), usersOf(released(out), c)); diff != "" {
			t.Errorf("campaign %s: users not released exactly once in arrival order (-arrived +released):\n%s", c, diff)
		}
	}
}

func TestFnCoalescesTinyRequests(t *testing.T) {
	// 20,000 one-user requests of 3 campaigns before the first firing,
	// then 3000 more, 250 after each firing (each firing reports before
	// them). 3000/s in 100 ms slots is 300 per slot, 100 each; a refill
	// takes 21 slots' worth (6300), so the inbox holds thousands of
	// recipients between refills, in "pending" and "open".
	addr := redistest.Start(t)
	const lane = "tiny"
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 3000, RedisAddr: addr, Lane: lane})
	rep := newReports(t, addr, lane)
	campaigns := []string{"a", "b", "c"}
	var in []recipient.Batch
	added := map[string]int64{}
	add := func(bs []recipient.Batch) {
		t.Helper()
		h.add(bs...)
		in = append(in, bs...)
		for _, b := range bs {
			added[b.Request.Req.Campaign] += int64(len(b.Recipients))
		}
	}
	const first, total = 20_000, 23_000
	openLimit := openLimitTimes * coalesceTarget
	maxEntries := 2 * first / coalesceTarget
	add(tinyRequests(campaigns, 0, first))
	if got := len(h.sp.bags["pending"]); got > maxEntries || got < first/coalesceTarget || h.pos().Open != 0 {
		t.Errorf("pending holds %d entries (and open %d) for 20,000 one-user requests, want %d to %d (coalesced, ≤ %d recipients each) and open 0",
			got, len(h.sp.bags["open"]), first/coalesceTarget, maxEntries, coalesceTarget)
	}
	t.Logf("20,000 one-user requests: pending holds %d entries, open %d", len(h.sp.bags["pending"]), len(h.sp.bags["open"]))

	var firings, even, maxPending, maxOpen int
	for h.tp.set {
		before := pendingOf(added, h.out)
		from := len(h.out)
		h.fire(0)
		firings++
		want := pendingOf(added, h.out)
		if diff := cmp.Diff(want, rep.hash(0)); diff != "" {
			t.Fatalf("firing %d: report (-pending +reported):\n%s", firings, diff)
		}
		if n := len(in); n < total {
			add(tinyRequests(campaigns, n, min(250, total-n)))
		}
		maxPending = max(maxPending, len(h.sp.bags["pending"]))
		maxOpen = max(maxOpen, len(h.sp.bags["open"]))

		got := perFiring(h.out[from:])[h.now.Sub(t0)]
		if before["a"] >= 100 && before["b"] >= 100 && before["c"] >= 100 {
			even++
			if diff := cmp.Diff(map[string]int{"a": 100, "b": 100, "c": 100}, got); diff != "" {
				t.Errorf("firing %d released (-want +got):\n%s", firings, diff)
			}
		}
		if !cmp.Equal(h.pos().WaitingBy, h.inboxBy(), cmpEmptyMap) {
			t.Fatalf("firing %d: WaitingBy = %v, want the inbox's %v", firings, h.pos().WaitingBy, h.inboxBy())
		}
	}
	t.Logf("%d firings (%d with all three campaigns backlogged), %d refills; at most %d entries in pending, %d in open",
		firings, even, h.refills, maxPending, maxOpen)
	if len(in) != total {
		t.Fatalf("added %d requests, want %d", len(in), total)
	}
	if maxPending > maxEntries {
		t.Errorf("pending held up to %d entries, want at most %d: one-user requests are coalesced into entries of up to %d", maxPending, maxEntries, coalesceTarget)
	}
	if maxOpen >= openLimit {
		t.Errorf("open held up to %d batches, want fewer than %d", maxOpen, openLimit)
	}
	if even < 60 {
		t.Errorf("%d firings with all three campaigns backlogged, want at least 60", even)
	}
	checkReleases(t, in, h.out, campaigns...)
	if len(h.out) != total {
		t.Errorf("released %d batches, want %d: one per request", len(h.out), total)
	}
	if n := rep.c.Exists(t.Context(), rep.key(0)).Val(); n != 0 {
		t.Errorf("report still exists after the last release: %v", rep.hash(0))
	}
}

func TestFnMixedSizesKeepArrivalOrder(t *testing.T) {
	// Two campaigns, each with one-user requests, small batches, audiences
	// cut into 200-recipient batches with a small tail, and large single
	// batches, interleaved, some arriving between firings; 500 per slot,
	// so firings and refills split entries and batches everywhere.
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 5000})
	rnd := rand.New(rand.NewPCG(1, 2))
	var in []recipient.Batch
	n := 0
	next := func() []recipient.Batch {
		n++
		c := []string{"m", "n"}[rnd.IntN(2)]
		id := fmt.Sprintf("%s-%d", c, n)
		switch p := rnd.IntN(10); {
		case p < 6:
			return batches(id, c, 1, 1)
		case p < 8:
			return batches(id, c, 1+rnd.IntN(coalesceBelow-1), coalesceBelow)
		case p < 9:
			return batches(id, c, 201+rnd.IntN(1000), 200)
		default:
			s := coalesceBelow + rnd.IntN(600)
			return batches(id, c, s, s)
		}
	}
	for range 2000 {
		bs := next()
		h.add(bs...)
		in = append(in, bs...)
	}
	coalesced := false
	for _, v := range h.sp.bags["pending"] {
		coalesced = coalesced || len(v.(pendingEntry).Batches) > 1
	}
	if !coalesced || h.sp.readsOf["open"] == 0 {
		t.Errorf("no coalesced entry in pending (%v), or open never moved to pending (%d reads)", coalesced, h.sp.readsOf["open"])
	}
	for h.tp.set {
		h.fire(0)
		if len(in) < 3000 {
			for range 20 {
				bs := next()
				h.add(bs...)
				in = append(in, bs...)
			}
		}
	}
	t.Logf("%d batches, %d released pieces, %d refills", len(in), len(h.out), h.refills)
	checkReleases(t, in, h.out, "m", "n")
}

func TestFnDrainsOpenOnly(t *testing.T) {
	// Only small batches, fewer than open's limit: nothing reaches
	// "pending" before the first firing, which must still be set and
	// drain them.
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 100})
	in := tinyRequests([]string{"x", "y"}, 0, 45)
	h.add(in...)
	if len(h.sp.bags["pending"]) != 0 || len(h.sp.bags["open"]) != 45 {
		t.Fatalf("inbox = %d in pending, %d in open; want all 45 open", len(h.sp.bags["pending"]), len(h.sp.bags["open"]))
	}
	if !h.tp.set || !h.tp.at.Equal(t0) {
		t.Fatalf("timer set=%v at %v, want set at now", h.tp.set, h.tp.at)
	}
	if n := h.drain(0); n != 5 {
		t.Errorf("45 recipients at 10 per slot drained in %d firings, want 5", n)
	}
	checkReleases(t, in, h.out, "x", "y")
	if len(h.sp.bags["open"])+len(h.sp.bags["pending"]) != 0 || h.pos().Waiting != 0 || h.pos().Open != 0 {
		t.Errorf("after the drain: %d open, %d pending, pos %+v; want all empty", len(h.sp.bags["open"]), len(h.sp.bags["pending"]), h.pos())
	}
}

func TestFnCoalesceOff(t *testing.T) {
	// CoalesceBelow 0: every batch is an entry of its own, as before
	// coalescing (the benchmarks' baseline).
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 1000})
	h.fn.CoalesceBelow = 0
	in := tinyRequests([]string{"x"}, 0, 300)
	h.add(in...)
	if len(h.sp.bags["pending"]) != 300 || len(h.sp.bags["open"]) != 0 {
		t.Errorf("inbox = %d in pending, %d in open; want 300 and 0", len(h.sp.bags["pending"]), len(h.sp.bags["open"]))
	}
	h.drain(0)
	checkReleases(t, in, h.out, "x")
}

func TestEntrySplit(t *testing.T) {
	e := pendingEntry{N: 7, Batches: []recipient.Batch{
		batches("r1", "c", 3, 3)[0], batches("r2", "c", 1, 1)[0], batches("r3", "c", 4, 4)[0],
	}}
	pieces := func(e pendingEntry) []string {
		var s []string
		for _, b := range e.Batches {
			var us []string
			for _, u := range b.Recipients {
				us = append(us, u.UserID)
			}
			s = append(s, strings.Join(us, ","))
		}
		return s
	}
	for _, tc := range []struct {
		k          int
		head, tail []string
	}{
		{1, []string{"r1-u0"}, []string{"r1-u1,r1-u2", "r2-u0", "r3-u0,r3-u1,r3-u2,r3-u3"}},
		{3, []string{"r1-u0,r1-u1,r1-u2"}, []string{"r2-u0", "r3-u0,r3-u1,r3-u2,r3-u3"}},
		{4, []string{"r1-u0,r1-u1,r1-u2", "r2-u0"}, []string{"r3-u0,r3-u1,r3-u2,r3-u3"}},
		{5, []string{"r1-u0,r1-u1,r1-u2", "r2-u0", "r3-u0"}, []string{"r3-u1,r3-u2,r3-u3"}},
		{7, []string{"r1-u0,r1-u1,r1-u2", "r2-u0", "r3-u0,r3-u1,r3-u2"}, []string{"r3-u3"}},
	} {
		head, tail := e.split(tc.k)
		if head.N != 7 || tail.N != 7 || head.size() != tc.k || tail.size() != e.size()-tc.k {
			t.Errorf("split(%d): N %d and %d, sizes %d and %d; want N 7, sizes %d and %d", tc.k, head.N, tail.N, head.size(), tail.size(), tc.k, e.size()-tc.k)
		}
		if diff := cmp.Diff(tc.head, pieces(head)); diff != "" {
			t.Errorf("split(%d) head (-want +got):\n%s", tc.k, diff)
		}
		if diff := cmp.Diff(tc.tail, pieces(tail)); diff != "" {
			t.Errorf("split(%d) tail (-want +got):\n%s", tc.k, diff)
		}
	}
	if diff := cmp.Diff([]string{"r1-u0,r1-u1,r1-u2", "r2-u0", "r3-u0,r3-u1,r3-u2,r3-u3"}, pieces(e)); diff != "" {
		t.Errorf("split changed the entry (-want +got):\n%s", diff)
	}
}
