package expand

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

const app = "com.example.news"

var received = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

// token returns a valid, distinct APNs token.
func token(i int) string { return fmt.Sprintf("%064x", i+1) }

func registerEvent(user, device string, i int, tags []string, alias map[string]string) pushflow.DeviceEvent {
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: user, DeviceID: device,
		Platform: pushflow.PlatformIOS, Token: token(i), Tags: tags, Alias: alias, At: received}
}

// startRegistry starts a redis-server, applies events to it and returns its
// address and a client on it.
func startRegistry(t *testing.T, events ...pushflow.DeviceEvent) (string, *redis.Client) {
	t.Helper()
	addr := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	if err := redisio.New(c).Apply(context.Background(), events); err != nil {
		t.Fatalf("seed registry: %v", err)
	}
	return addr, c
}

// newFn returns an expandFn on addr, set up, torn down by the test's cleanup.
func newFn(t *testing.T, addr string, batchSize int, scanCount int64) *expandFn {
	t.Helper()
	fn := &expandFn{RedisAddr: addr, BatchSize: batchSize, ScanCount: scanCount, SliceMax: DefaultSliceMax, SliceTime: DefaultSliceTime}
	fn.Setup()
	t.Cleanup(fn.Teardown)
	return fn
}

type out struct {
	Batches []recipient.Batch
	Events  []pushflow.DeliveryEvent
	Dead    []pushflow.DeadLetter
}

// run expands req as a runner would: it calls ProcessElement on the
// initial restriction and, while a call asks to be resumed, checkpoints the
// tracker (TrySplit(0)) and calls it again on the residual. It returns
// everything emitted and the number of calls.
func run(t *testing.T, fn *expandFn, req recipient.Request) out {
	t.Helper()
	o, _ := runCalls(t, fn, req, 1000)
	return o
}

func runCalls(t *testing.T, fn *expandFn, req recipient.Request, maxCalls int) (o out, calls int) {
	t.Helper()
	rest := fn.CreateInitialRestriction(req)
	for calls < maxCalls {
		calls++
		rt := fn.CreateTracker(rest)
		cont, err := fn.ProcessElement(context.Background(), rt, req,
			func(b recipient.Batch) { o.Batches = append(o.Batches, b) },
			func(e pushflow.DeliveryEvent) { o.Events = append(o.Events, e) },
			func(d pushflow.DeadLetter) { o.Dead = append(o.Dead, d) })
		if err != nil {
			t.Fatalf("ProcessElement(%s) call %d = %v, want nil", req.Req.ID, calls, err)
		}
		if err := rt.GetError(); err != nil {
			t.Fatalf("tracker error after call %d: %v", calls, err)
		}
		if !cont.ShouldResume() {
			if !rt.IsDone() {
				t.Fatalf("call %d stopped with its restriction not done: %+v", calls, rt.GetRestriction())
			}
			return o, calls
		}
		primary, residual, err := rt.TrySplit(0)
		if err != nil {
			t.Fatalf("checkpoint after call %d: %v", calls, err)
		}
		if !rt.IsDone() || !primary.(Cursor).Done {
			t.Fatalf("checkpoint after call %d: primary %+v not done", calls, primary)
		}
		if residual == nil {
			return o, calls // asked to resume with nothing left
		}
		rest = residual.(Cursor)
	}
	t.Fatalf("%s: still resuming after %d calls", req.Req.ID, maxCalls)
	return o, calls
}

func request(id string, target pushflow.Target) recipient.Request {
	return recipient.Request{
		Req: pushflow.PushRequest{V: 1, ID: id, App: app, Campaign: "demo", Category: "news", Priority: pushflow.PriorityNormal,
			Target: target, Notification: pushflow.Notification{Title: "t"}},
		Source:     recipient.Source{Topic: pushflow.TopicRequests, Partition: 1, Offset: 17},
		ReceivedAt: received,
	}
}

// dropped is the expand-stage DeliveryEvent of req for user/device.
func dropped(req recipient.Request, user, device, reason string) pushflow.DeliveryEvent {
	return pushflow.DeliveryEvent{V: 1, RequestID: req.Req.ID, Campaign: "demo", App: app, Category: "news", Priority: pushflow.PriorityNormal,
		UserID: user, DeviceID: device, Stage: pushflow.StageExpand, Outcome: pushflow.OutcomeDropped, Reason: reason, RequestTime: received}
}

var opts = cmp.Options{
	cmpopts.IgnoreFields(pushflow.DeliveryEvent{}, "EventID", "EventTime", "LatencyMs"),
	cmpopts.IgnoreFields(recipient.Batch{}, "Emitted"), // checked by TestExpandStampsEmission
	cmpopts.EquateEmpty(),
}

func users(ids ...string) []recipient.Recipient {
	rs := make([]recipient.Recipient, len(ids))
	for i, id := range ids {
		rs[i] = recipient.Recipient{UserID: id}
	}
	return rs
}

// allUsers flattens the batches' user ids, in order.
func allUsers(bs []recipient.Batch) []string {
	var us []string
	for _, b := range bs {
		for _, r := range b.Recipients {
			us = append(us, r.UserID)
		}
	}
	return us
}

func TestExpandUsers(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	fn := newFn(t, addr, 2, 10)
	req := request("r-users", pushflow.Target{Users: []string{"u1", "u2", "u1", "u3", "u4", "u2", "u5"}})
	got := run(t, fn, req)
	want := out{Batches: []recipient.Batch{
		{Request: req, Recipients: users("u1", "u2"), Seq: 0},
		{Request: req, Recipients: users("u3", "u4"), Seq: 1},
		{Request: req, Recipients: users("u5"), Seq: 2},
	}}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("expand(users) mismatch (-want +got):\n%s", diff)
	}
}

// TestExpandUsersExactBatch checks an audience of exactly BatchSize users
// is one batch, with no empty batch after it.
func TestExpandUsersExactBatch(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	fn := newFn(t, addr, 3, 10)
	req := request("r-exact", pushflow.Target{Users: []string{"a", "b", "c"}})
	got := run(t, fn, req)
	want := out{Batches: []recipient.Batch{{Request: req, Recipients: users("a", "b", "c")}}}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("expand(3 users, batch 3) mismatch (-want +got):\n%s", diff)
	}
}

func TestExpandDevices(t *testing.T) {
	addr, _ := startRegistry(t,
		registerEvent("u1", "d1", 1, nil, nil),
		registerEvent("u1", "d2", 2, nil, nil),
		registerEvent("u2", "d3", 3, nil, nil),
		registerEvent("u6", "d7", 7, nil, nil),
		pushflow.DeviceEvent{V: 1, Op: pushflow.OpUnregister, App: app, UserID: "u6", DeviceID: "d7"},
	)
	fn := newFn(t, addr, 2, 10)
	req := request("r-devices", pushflow.Target{Devices: []string{"d3", "d404", "d1", "d3", "d7", "d2"}})
	got := run(t, fn, req)
	want := out{
		Batches: []recipient.Batch{
			{Request: req, Recipients: []recipient.Recipient{{UserID: "u2", DeviceID: "d3"}, {UserID: "u1", DeviceID: "d1"}}, Seq: 0},
			{Request: req, Recipients: []recipient.Recipient{{UserID: "u1", DeviceID: "d2"}}, Seq: 1},
		},
		Events: []pushflow.DeliveryEvent{
			dropped(req, "", "d404", pushflow.ReasonNoDevice),
			dropped(req, "", "d7", pushflow.ReasonNoDevice), // unregistered
		},
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("expand(devices) mismatch (-want +got):\n%s", diff)
	}
}

func TestExpandAlias(t *testing.T) {
	addr, _ := startRegistry(t,
		registerEvent("u8", "d9", 9, nil, map[string]string{"phone": "13900000008"}),
		registerEvent("u8", "d9", 9, nil, map[string]string{"phone": "13900000009"}), // replaces ...08
		registerEvent("u1", "d1", 1, nil, map[string]string{"phone": "13900000001"}),
		registerEvent("u2", "d2", 2, nil, map[string]string{"phone": "13900000001"}), // shares u1's number
	)
	fn := newFn(t, addr, 10, 10)
	req := request("r-alias", pushflow.Target{Alias: pushflow.AliasTarget{Type: "phone", Values: []string{"13900000009", "13900000008", "13900000001", "13900000009"}}})
	got := run(t, fn, req)
	want := out{
		Batches: []recipient.Batch{{Request: req, Recipients: []recipient.Recipient{
			{UserID: "u8", DeviceID: "d9"}, {UserID: "u1", DeviceID: "d1"}, {UserID: "u2", DeviceID: "d2"},
		}}},
		Events: []pushflow.DeliveryEvent{dropped(req, "", "", pushflow.ReasonNoDevice)}, // the replaced ...08
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("expand(alias) mismatch (-want +got):\n%s", diff)
	}
}

// scannedKeys turns on redis-server's slow log for every command, runs f,
// and returns the keys SSCAN was called on.
func scannedKeys(t *testing.T, c *redis.Client, f func()) []string {
	t.Helper()
	ctx := context.Background()
	for _, kv := range [][2]string{{"slowlog-log-slower-than", "0"}, {"slowlog-max-len", "100000"}} {
		if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatalf("CONFIG SET %s: %v", kv[0], err)
		}
	}
	if err := c.SlowLogReset(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	f()
	log, err := c.SlowLogGet(ctx, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range log {
		if len(e.Args) > 1 && strings.EqualFold(fmt.Sprint(e.Args[0]), "sscan") {
			keys = append(keys, fmt.Sprint(e.Args[1]))
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func TestExpandTags(t *testing.T) {
	addr, c := startRegistry(t,
		registerEvent("u1", "d1", 1, []string{"sports", "vip"}, nil),
		registerEvent("u2", "d2", 2, []string{"sports"}, nil),
		registerEvent("u3", "d3", 3, []string{"news"}, nil),
		registerEvent("u4", "d4", 4, nil, nil),
		registerEvent("u7", "d7", 7, []string{"sports", "churned"}, nil),
	)
	for _, tt := range []struct {
		expr      string
		wantUsers []string
		wantScan  string // the set the expansion must scan
	}{
		{"sports", []string{"u1", "u2", "u7"}, "pf:tag:" + app + ":sports"},
		{"sports AND NOT churned", []string{"u1", "u2"}, "pf:tag:" + app + ":sports"},
		{"NOT churned AND vip", []string{"u1"}, "pf:tag:" + app + ":vip"},
		{"NOT churned", []string{"u1", "u2", "u3", "u4"}, "pf:users:" + app},
		{"news OR vip", []string{"u1", "u3"}, "pf:users:" + app},
	} {
		t.Run(tt.expr, func(t *testing.T) {
			fn := newFn(t, addr, 2, 2)
			req := request("r-tags", pushflow.Target{Tags: tt.expr})
			var got out
			scanned := scannedKeys(t, c, func() { got = run(t, fn, req) })
			if diff := cmp.Diff([]string{tt.wantScan}, scanned); diff != "" {
				t.Errorf("expand(tags %q) scanned keys (-want +got):\n%s", tt.expr, diff)
			}
			if len(got.Events) != 0 || len(got.Dead) != 0 {
				t.Errorf("expand(tags %q) = events %v, dead %v, want none", tt.expr, got.Events, got.Dead)
			}
			us := allUsers(got.Batches)
			slices.Sort(us)
			if diff := cmp.Diff(tt.wantUsers, us); diff != "" {
				t.Errorf("expand(tags %q) users (-want +got):\n%s", tt.expr, diff)
			}
			for i, b := range got.Batches {
				if b.Seq != i || len(b.Recipients) == 0 || len(b.Recipients) > 2 {
					t.Errorf("batch %d: Seq %d, %d recipients; want Seq %d and 1..2 recipients", i, b.Seq, len(b.Recipients), i)
				}
			}
		})
	}
}

func TestExpandBroadcast(t *testing.T) {
	const n = 300 // more than the listpack limit (128), so SSCAN really pages
	var events []pushflow.DeviceEvent
	var want []string
	for i := range n {
		u := fmt.Sprintf("u%03d", i)
		events = append(events, registerEvent(u, "d"+u, i, nil, nil))
		want = append(want, u)
	}
	addr, c := startRegistry(t, events...)
	const batchSize, scanCount = 7, 10
	fn := newFn(t, addr, batchSize, scanCount)
	req := request("r-broadcast", pushflow.Target{Broadcast: true})
	var got out
	var pages int
	scannedKeys(t, c, func() { got = run(t, fn, req) })
	if log, err := c.SlowLogGet(context.Background(), -1).Result(); err == nil {
		for _, e := range log {
			if strings.EqualFold(fmt.Sprint(e.Args[0]), "sscan") {
				pages++
			}
		}
	}
	if pages < n/scanCount/2 {
		t.Errorf("expand(broadcast of %d, ScanCount %d) made %d SSCAN calls, want it to page through the set", n, scanCount, pages)
	}
	if len(got.Events) != 0 || len(got.Dead) != 0 {
		t.Errorf("expand(broadcast) = events %v, dead %v, want none", got.Events, got.Dead)
	}
	us := allUsers(got.Batches)
	slices.Sort(us)
	if diff := cmp.Diff(want, us); diff != "" {
		t.Errorf("expand(broadcast) users, each exactly once (-want +got):\n%s", diff)
	}
	for i, b := range got.Batches {
		if b.Seq != i {
			t.Errorf("batch %d has Seq %d, want %d", i, b.Seq, i)
		}
		if len(b.Recipients) == 0 || len(b.Recipients) > batchSize {
			t.Errorf("batch %d has %d recipients, want 1..%d", i, len(b.Recipients), batchSize)
		}
		if i < len(got.Batches)-1 && len(b.Recipients) != batchSize {
			t.Errorf("batch %d of %d has %d recipients, want full batches of %d before the last", i, len(got.Batches), len(b.Recipients), batchSize)
		}
		if b.Request.Req.ID != req.Req.ID {
			t.Errorf("batch %d request %q, want %q", i, b.Request.Req.ID, req.Req.ID)
		}
	}
	if wantN := (n + batchSize - 1) / batchSize; len(got.Batches) != wantN {
		t.Errorf("expand(broadcast of %d) = %d batches, want %d", n, len(got.Batches), wantN)
	}
}

func TestExpandFile(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	dir := t.TempDir()
	audience := filepath.Join(dir, "audience.txt")
	if err := os.WriteFile(audience, []byte("# exported 2026-11-22\nu7\n\n  u8  \nu7\n# u9 is commented out\nu10\r\n\t\nu8\nu11"), 0o644); err != nil {
		t.Fatal(err)
	}
	comments := filepath.Join(dir, "comments.txt")
	if err := os.WriteFile(comments, []byte("# nobody\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.txt")
	fn := newFn(t, addr, 2, 10)
	fn.AudienceRoots = []string{dir}

	for _, tt := range []struct {
		name        string
		file        string
		wantUsers   [][]string
		wantReasons []string // reasons of the request-level events
		reasonIsPfx bool
	}{
		{name: "path", file: audience, wantUsers: [][]string{{"u7", "u8"}, {"u10", "u11"}}},
		{name: "file URI", file: "file://" + audience, wantUsers: [][]string{{"u7", "u8"}, {"u10", "u11"}}},
		{name: "missing", file: missing, wantReasons: []string{"file_error: open " + missing + ": no such file or directory"}},
		{name: "remote scheme", file: "s3://bucket/audience.txt", wantReasons: []string{`file_error: unsupported scheme in "s3://bucket/audience.txt" (local paths and file:// only)`}},
		{name: "only comments", file: comments, wantReasons: []string{ReasonNoRecipients}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := request("r-file", pushflow.Target{File: tt.file})
			got := run(t, fn, req)
			var want out
			for i, us := range tt.wantUsers {
				want.Batches = append(want.Batches, recipient.Batch{Request: req, Recipients: users(us...), Seq: i})
			}
			for _, r := range tt.wantReasons {
				want.Events = append(want.Events, dropped(req, "", "", r))
			}
			if diff := cmp.Diff(want, got, opts); diff != "" {
				t.Errorf("expand(file %s) mismatch (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestExpandUnknownApp(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	fn := newFn(t, addr, 10, 10)
	req := request("r-8", pushflow.Target{Users: []string{"u1"}})
	req.Req.App = "com.unknown.app"
	got := run(t, fn, req)

	raw, err := json.Marshal(req.Req)
	if err != nil {
		t.Fatal(err)
	}
	ev := dropped(req, "", "", pushflow.ReasonUnknownApp)
	ev.App = "com.unknown.app"
	want := out{
		Events: []pushflow.DeliveryEvent{ev},
		Dead: []pushflow.DeadLetter{{
			V: 1, Stage: pushflow.StageValidate,
			Reason: `app: unknown app "com.unknown.app" (no device was ever registered for it)`,
			Raw:    string(raw), Topic: pushflow.TopicRequests, Partition: 1, Offset: 17, RequestID: "r-8",
		}},
	}
	if diff := cmp.Diff(want, got, opts, cmpopts.IgnoreFields(pushflow.DeadLetter{}, "At")); diff != "" {
		t.Errorf("expand(unknown app) mismatch (-want +got):\n%s", diff)
	}
	if len(got.Dead) == 1 {
		back, err := pushflow.DecodePushRequest([]byte(got.Dead[0].Raw))
		if err != nil || back.ID != "r-8" {
			t.Errorf("dead letter raw decodes to %+v, %v, want request r-8", back, err)
		}
	}
}

func TestExpandEmptyAudience(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, []string{"sports"}, nil))
	fn := newFn(t, addr, 10, 10)
	for _, target := range []pushflow.Target{
		{Tags: "nobody_has_this_tag"},
		{Tags: "sports AND NOT sports"},
	} {
		req := request("r-empty", target)
		got := run(t, fn, req)
		want := out{Events: []pushflow.DeliveryEvent{dropped(req, "", "", ReasonNoRecipients)}}
		if diff := cmp.Diff(want, got, opts); diff != "" {
			t.Errorf("expand(%+v) mismatch (-want +got):\n%s", target, diff)
		}
	}
}

// TestExpandRedisDown checks a registry failure fails the bundle (an error
// to retry) rather than dropping the request.
func TestExpandRedisDown(t *testing.T) {
	fn := newFn(t, "127.0.0.1:1", 10, 10)
	// Fail fast: the same DoFn on a client that does not retry (Setup's
	// retries only make the test slower).
	fn.reg.Close()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { down.Close() })
	fn.reg = redisio.New(down)
	_, err := fn.ProcessElement(context.Background(), fn.CreateTracker(Cursor{}), request("r-down", pushflow.Target{Users: []string{"u1"}}),
		func(recipient.Batch) { t.Error("emitted a batch with Redis down") },
		func(pushflow.DeliveryEvent) { t.Error("emitted an event with Redis down") },
		func(pushflow.DeadLetter) { t.Error("emitted a dead letter with Redis down") })
	if err == nil || !strings.HasPrefix(err.Error(), "expand: r-down: ") {
		t.Errorf("ProcessElement with Redis down = %v, want an error prefixed %q", err, "expand: r-down: ")
	}
}
