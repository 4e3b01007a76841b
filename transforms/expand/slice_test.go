package expand

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// seedUsers registers n users u0000 … and returns their ids.
func seedUsers(t *testing.T, n int, tags []string) (addr string, ids []string) {
	t.Helper()
	var events []pushflow.DeviceEvent
	for i := range n {
		u := fmt.Sprintf("u%04d", i)
		events = append(events, registerEvent(u, "d"+u, i, tags, nil))
		ids = append(ids, u)
	}
	addr, _ = startRegistry(t, events...)
	return addr, ids
}

// checkSliced checks a sliced expansion emitted want exactly once, in
// batches numbered 0, 1, 2 … across calls, and no events.
func checkSliced(t *testing.T, got out, want []string) {
	t.Helper()
	us := allUsers(got.Batches)
	slices.Sort(us)
	if diff := cmp.Diff(want, us); diff != "" {
		t.Errorf("users, each exactly once (-want +got):\n%s", diff)
	}
	for i, b := range got.Batches {
		if b.Seq != i {
			t.Fatalf("batch %d has Seq %d, want %d (Seq continues across calls)", i, b.Seq, i)
		}
	}
	if len(got.Events) != 0 || len(got.Dead) != 0 {
		t.Errorf("events %v, dead %v, want none", got.Events, got.Dead)
	}
}

func TestExpandSlices(t *testing.T) {
	const n = 1000
	addr, want := seedUsers(t, n, []string{"sports"})
	file := filepath.Join(t.TempDir(), "audience.txt")
	if err := os.WriteFile(file, []byte(strings.Join(want, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		target pushflow.Target
	}{
		{"broadcast", pushflow.Target{Broadcast: true}},
		{"tag", pushflow.Target{Tags: "sports"}},
		{"tag expression", pushflow.Target{Tags: "sports AND NOT vip"}},
		{"file", pushflow.Target{File: file}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fn := newFn(t, addr, 64, 50)
			fn.SliceMax = 120
			fn.AudienceRoots = []string{filepath.Dir(file)}
			got, calls := runCalls(t, fn, request("r-slices", tt.target), 100)
			checkSliced(t, got, want)
			// A slice stops after the page that reaches SliceMax: 120
			// plus at most one page (50 lines, or about 50 scanned).
			if min, max := n/(120+2*50), n/120+1; calls < min || calls > max {
				t.Errorf("%d calls, want %d..%d (SliceMax 120 of %d)", calls, min, max, n)
			}
		})
	}
}

func TestExpandSliceTime(t *testing.T) {
	addr, want := seedUsers(t, 400, nil)
	fn := newFn(t, addr, 64, 10)
	fn.SliceTime = time.Nanosecond // every slice ends after its first page
	got, calls := runCalls(t, fn, request("r-time", pushflow.Target{Broadcast: true}), 1000)
	checkSliced(t, got, want)
	if calls < 400/30 {
		t.Errorf("%d calls for 400 users in pages of ~10 with a 1ns SliceTime, want a call per page or so", calls)
	}
}

// TestExpandBackpressure checks a slice reads the campaign's backlog in the
// paced lane from the pacer's reports: at or above MaxPending it emits
// nothing and asks to resume after Poll; below it emits about the room left.
func TestExpandBackpressure(t *testing.T) {
	addr, want := seedUsers(t, 1000, nil)
	fn := newFn(t, addr, 50, 50)
	fn.Lane, fn.Shards, fn.MaxPending, fn.Poll = "paced", 2, 300, 700*time.Millisecond
	reg := redisio.Open(addr)
	t.Cleanup(func() { reg.Close() })
	report := func(shard int, pending map[string]int64) {
		t.Helper()
		if err := reg.ReportBacklog(context.Background(), "paced", shard, pending, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	req := request("r-bp", pushflow.Target{Broadcast: true}) // campaign "demo"
	var o out
	call := func(rest Cursor) (emitted int, resume time.Duration, next Cursor) {
		t.Helper()
		before := len(allUsers(o.Batches))
		rt := fn.CreateTracker(rest)
		cont, err := fn.ProcessElement(context.Background(), rt, req,
			func(b recipient.Batch) { o.Batches = append(o.Batches, b) },
			func(e pushflow.DeliveryEvent) { o.Events = append(o.Events, e) },
			func(d pushflow.DeadLetter) { o.Dead = append(o.Dead, d) })
		if err != nil {
			t.Fatal(err)
		}
		if !cont.ShouldResume() {
			return len(allUsers(o.Batches)) - before, -1, rest
		}
		_, residual, _ := rt.TrySplit(0)
		return len(allUsers(o.Batches)) - before, cont.ResumeDelay(), residual.(Cursor)
	}

	// Full: 200 + 150 pending for demo (another campaign's backlog is not
	// demo's).
	report(0, map[string]int64{"demo": 200, "other": 100000})
	report(1, map[string]int64{"demo": 150})
	n, delay, rest := call(Cursor{})
	if n != 0 || delay != fn.Poll {
		t.Fatalf("backlog 350 of 300: emitted %d, resume in %v; want 0 and Poll (%v)", n, delay, fn.Poll)
	}
	if !rest.Started || rest.Pos != 0 || rest.Seq != 0 {
		t.Fatalf("paused slice moved the cursor: residual %+v", rest)
	}
	// Room for 100: the slice stops after the page that fills it.
	report(1, map[string]int64{"demo": 0})
	n, delay, rest = call(rest)
	if n < 100 || n > 100+2*50 || delay != fn.Poll {
		t.Fatalf("backlog 200 of 300: emitted %d, resume in %v; want 100..200 (room + a page) and Poll", n, delay)
	}
	// No reports (the pacer drained and its reports expired): full slices
	// until the end.
	report(0, nil)
	report(1, nil)
	for rest.Seq > 0 && !rest.Done {
		if n, delay, rest = call(rest); delay < 0 {
			break
		}
		if n > 300+2*50 {
			t.Fatalf("emitted %d in one slice with no backlog, want at most MaxPending + a page", n)
		}
	}
	checkSliced(t, o, want)
}

func TestCursorTracker(t *testing.T) {
	rt := newTracker(Cursor{Pos: 42, Seq: 3, Emitted: 10, Started: true})
	if rt.TryClaim(uint64(7)) || rt.GetError() == nil {
		t.Errorf("TryClaim(7) at position 42 = true or no error, want false and an error")
	}
	rt = newTracker(Cursor{Pos: 42, Seq: 3, Emitted: 10, Started: true})
	if !rt.TryClaim(uint64(42)) {
		t.Fatalf("TryClaim(42) at 42 = false: %v", rt.GetError())
	}
	if p, r, err := rt.TrySplit(0.5); err != nil || r != nil || p.(Cursor).Done {
		t.Errorf("TrySplit(0.5) = %+v, %+v, %v; want no split", p, r, err)
	}
	advance(rt, Cursor{Pos: 99, Seq: 5, Emitted: 30, Started: true})
	if done, rem := rt.GetProgress(); done != 20 || rem != 1 {
		t.Errorf("GetProgress = %v, %v; want 20 emitted by this call, 1 remaining", done, rem)
	}
	p, r, err := rt.TrySplit(0)
	if err != nil || !p.(Cursor).Done || r.(Cursor) != (Cursor{Pos: 99, Seq: 5, Emitted: 30, Started: true}) {
		t.Errorf("TrySplit(0) = %+v, %+v, %v; want a done primary and the current position as residual", p, r, err)
	}
	if !rt.IsDone() || rt.TryClaim(uint64(99)) {
		t.Errorf("after a checkpoint: IsDone %v, TryClaim true; want done and no more claims", rt.IsDone())
	}
	// A finished restriction has nothing to checkpoint.
	rt = newTracker(Cursor{})
	rt.TryClaim(uint64(0))
	advance(rt, Cursor{Started: true, Done: true, Emitted: 5})
	if _, r, _ := rt.TrySplit(0); r != nil || !rt.IsDone() {
		t.Errorf("TrySplit(0) of a done restriction gave residual %+v, want none", r)
	}
}

// TestExpandCachesKnownApps checks a worker asks Redis whether an app
// exists once, not once per request, and still asks every time for an app
// it has not seen.
func TestExpandCachesKnownApps(t *testing.T) {
	addr, c := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	fn := newFn(t, addr, 10, 10)
	exists := func() int64 {
		t.Helper()
		info, err := c.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "cmdstat_exists:calls="); ok {
				var n int64
				fmt.Sscanf(v, "%d", &n)
				return n
			}
		}
		return 0
	}
	before := exists()
	for i := range 20 {
		got := run(t, fn, request(fmt.Sprintf("r-%d", i), pushflow.Target{Users: []string{"u1"}}))
		if len(got.Batches) != 1 {
			t.Fatalf("request %d: %d batches, want 1", i, len(got.Batches))
		}
	}
	if n := exists() - before; n != 1 {
		t.Errorf("20 requests of one app made %d EXISTS calls, want 1", n)
	}
	unknown := request("r-unknown", pushflow.Target{Users: []string{"u1"}})
	unknown.Req.App = "com.unknown.app"
	for range 2 {
		if got := run(t, fn, unknown); len(got.Dead) != 1 {
			t.Errorf("unknown app: %d dead letters, want 1 each time", len(got.Dead))
		}
	}
}

// TestExpandStampsEmission checks every batch carries when it was emitted,
// and a slice remembers its last one, for the backpressure's transit check.
func TestExpandStampsEmission(t *testing.T) {
	addr, _ := seedUsers(t, 300, nil)
	fn := newFn(t, addr, 64, 50)
	fn.SliceMax = 100
	before := time.Now().UnixNano()
	rt := fn.CreateTracker(Cursor{})
	var bs []recipient.Batch
	if _, err := fn.ProcessElement(context.Background(), rt, request("r-stamp", pushflow.Target{Broadcast: true}),
		func(b recipient.Batch) { bs = append(bs, b) }, func(pushflow.DeliveryEvent) {}, func(pushflow.DeadLetter) {}); err != nil {
		t.Fatal(err)
	}
	_, residual, _ := rt.TrySplit(0)
	c := residual.(Cursor)
	var last int64
	for i, b := range bs {
		if b.Emitted < before || b.Emitted < last {
			t.Errorf("batch %d Emitted %d, want >= %d and not before the previous batch's %d", i, b.Emitted, before, last)
		}
		last = b.Emitted
	}
	if n := int64(len(allUsers(bs))); c.LastAt != last || c.LastN != n {
		t.Errorf("residual LastAt %d, LastN %d; want the last batch's %d and the slice's %d", c.LastAt, c.LastN, last, n)
	}
}
