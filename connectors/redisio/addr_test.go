package redisio_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/internal/testpki"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want redisio.Addr
		str  string // canonical form; "" = in
	}{
		{"127.0.0.1:6379", redisio.Addr{Addrs: []string{"127.0.0.1:6379"}}, ""},
		{"redis://h:1", redisio.Addr{Addrs: []string{"h:1"}}, "h:1"},
		{"rediss://pushflow@h:1/2?password_file=/run/secrets/redis&ca_file=/ca.pem",
			redisio.Addr{TLS: true, Addrs: []string{"h:1"}, Username: "pushflow", DB: 2, PasswordFile: "/run/secrets/redis", CAFile: "/ca.pem"},
			"rediss://pushflow@h:1/2?ca_file=%2Fca.pem&password_file=%2Frun%2Fsecrets%2Fredis"},
		{"redis+cluster://a:1,b:2,c:3?password_env=REDIS_PASSWORD",
			redisio.Addr{Cluster: true, Addrs: []string{"a:1", "b:2", "c:3"}, PasswordEnv: "REDIS_PASSWORD"}, ""},
		{"rediss+cluster://u@a:1", redisio.Addr{Cluster: true, TLS: true, Addrs: []string{"a:1"}, Username: "u"}, ""},
	} {
		got, err := redisio.ParseAddr(tc.in)
		if err != nil {
			t.Errorf("ParseAddr(%q) = %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseAddr(%q) (-want +got):\n%s", tc.in, diff)
		}
		str := tc.str
		if str == "" {
			str = tc.in
		}
		if got.String() != str {
			t.Errorf("ParseAddr(%q).String() = %q, want %q", tc.in, got.String(), str)
		}
		if again, err := redisio.ParseAddr(got.String()); err != nil || !cmp.Equal(again, got) {
			t.Errorf("ParseAddr(%q) = %+v, %v: does not round trip %+v", got.String(), again, err, got)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"redis://u:secret@h:1", "password in the Redis address"},
		{"redis://h:1?password=secret", "password in the Redis address"},
		{"redis://h:1,g:2", "need redis+cluster://"},
		{"redis+cluster://a:1/3", "database 0 only"},
		{"redis://h:1?ca_file=/ca.pem", "ca_file needs TLS"},
		{"redis://h:1?password_file=a&password_env=B", "exclusive"},
		{"redis://h:1?timeout=3", `unknown parameter "timeout"`},
		{"memcache://h:1", `unknown scheme "memcache"`},
		{"redis://h", `"h" is not host:port`},
		{"u@h:1", "want host:port or a redis://"},
	} {
		_, err := redisio.ParseAddr(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAddr(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseAddr(%q) = %v: shows the password", tc.in, err)
		}
	}
}

func secretFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenSecured connects through Open and Dial to redis-servers with a
// password, an ACL user and TLS, and checks each misconfiguration's error.
func TestOpenSecured(t *testing.T) {
	const pass = "s3cret-pass"
	certFile, keyFile, _ := testpki.SelfSigned(t)
	plain, tlsAddr := redistest.StartTLS(t, certFile, keyFile,
		"--requirepass", pass, "--user", "pushflow", "on", ">"+pass, "~*", "&*", "+@all")
	passFile := secretFile(t, "pass", pass+"\n")
	wrongFile := secretFile(t, "wrong", "nope\n")
	t.Setenv("PUSHFLOW_TEST_REDIS_PASSWORD", pass)

	for _, tc := range []struct {
		name, addr string
		want       string // "" = works
	}{
		{"requirepass", "redis://" + plain + "?password_file=" + passFile, ""},
		{"ACL user, password from env", "redis://pushflow@" + plain + "?password_env=PUSHFLOW_TEST_REDIS_PASSWORD", ""},
		{"ACL user over TLS", "rediss://pushflow@" + tlsAddr + "?password_file=" + passFile + "&ca_file=" + certFile, ""},
		{"wrong password", "redis://pushflow@" + plain + "?password_file=" + wrongFile,
			`redisio: Redis authentication failed for user "pushflow" at ` + plain + `: are --redis_username and --redis_password_file (or --redis_password_env) right?`},
		{"no password", plain, `Redis authentication failed for user "default"`},
		{"no CA", "rediss://" + tlsAddr + "?password_file=" + passFile, "its TLS certificate was not accepted: is it signed by a CA in the system roots only (no --redis_ca_file)"},
		{"plaintext to the TLS port", "redis://" + tlsAddr + "?password_file=" + passFile, "closed the connection: if that port speaks TLS, set --redis_tls"},
		{"missing password file", "redis://" + plain + "?password_file=/nonexistent/pass", "redisio: read the Redis password file: open /nonexistent/pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := redisio.Dial(ctx, tc.addr)
			if err == nil {
				defer r.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Dial(%q) = %v, want nil", tc.addr, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Dial(%q) = %v, want an error containing %q", tc.addr, err, tc.want)
			case err != nil && strings.Contains(err.Error(), pass):
				t.Fatalf("Dial(%q) = %v: shows the password", tc.addr, err)
			}
			// Open, what the DoFns call, fails its commands the same way.
			o := redisio.Open(tc.addr)
			defer o.Close()
			err = o.Apply(ctx, []pushflow.DeviceEvent{register("u1", "d1", "tok", t0)})
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Open(%q).Apply = %v, want an error containing %q", tc.addr, err, tc.want)
			}
			if tc.want == "" {
				got, err := o.UserDevices(ctx, app, []string{"u1"})
				if err != nil || len(got["u1"]) != 1 {
					t.Fatalf("UserDevices = %v, %v, want u1's device", got, err)
				}
			}
			if strings.Contains(tc.want, "authentication failed") && !errors.Is(err, redisio.ErrAuth) {
				t.Errorf("errors.Is(%v, ErrAuth) = false", err)
			}
		})
	}
}

// TestOpenCluster runs every Lua script and the pipelined reads and writes
// through Open on a redis+cluster:// address.
func TestOpenCluster(t *testing.T) {
	connectCluster(t).Close() // starts (or empties) the shared cluster
	r := redisio.Open("redis+cluster://" + strings.Join(cluster.addrs, ","))
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	evs := []pushflow.DeviceEvent{
		withTags(withAlias(register("u1", "d1", "t1", t0), "phone", "139"), "sports", "vip"),
		withTags(register("u2", "d2", "t2", t0), "news"),
		register("u3", "d3", "t3", t0),
		settings("u1", pushflow.Settings{Timezone: "UTC", OptOut: []string{"marketing"}}),
	}
	if err := r.Apply(ctx, evs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// d1 moves to u2 (device and user scripts, the previous owner's delete),
	// d3 unregisters.
	if err := r.Apply(ctx, []pushflow.DeviceEvent{withAlias(register("u2", "d1", "t1b", t1), "phone", "140"), unregister("u3", "d3")}); err != nil {
		t.Fatalf("Apply (move, unregister): %v", err)
	}
	removed, err := r.RemoveToken(ctx, app, "d2", "t2")
	if err != nil || !removed {
		t.Fatalf("RemoveToken = %v, %v, want true", removed, err)
	}
	got := snapshot(t, r)
	want := state{
		UserDevices: map[string][]redisio.Device{"u2": {dev("d1", "u2", "t1b", t1)}},
		Devices:     map[string]redisio.Device{"d1": dev("d1", "u2", "t1b", t1)},
		Phones:      map[string][]string{"140": {"d1"}},
		Tags:        map[string][]string{"news": {"u2"}, "sports": {"u1"}, "vip": {"u1"}},
		Users:       []string{"u1", "u2"},
		Settings:    map[string]pushflow.Settings{"u1": {Timezone: "UTC", OptOut: []string{"marketing"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state after Apply on the cluster (-want +got):\n%s", diff)
	}

	claimed, err := r.ClaimOwners(ctx, []string{"r1/d1", "r1/d2", "r1/d1"}, "w1")
	if err != nil || len(claimed) != 3 {
		t.Fatalf("ClaimOwners = %v, %v", claimed, err)
	}
	freq, err := r.IncrFrequency(ctx, app, "news", "2026-11-22", []string{"u1", "u2", "u1"})
	if err != nil || freq["u1"] < 1 || freq["u2"] != 1 {
		t.Fatalf("IncrFrequency = %v, %v", freq, err)
	}
	if err := r.SetInterestScores(ctx, app, map[string]map[string]float64{"u1": {"news": 0.5}}); err != nil {
		t.Fatalf("SetInterestScores: %v", err)
	}
	if sc, err := r.InterestScores(ctx, app, "news", []string{"u1", "u2"}); err != nil || sc["u1"] != 0.5 {
		t.Fatalf("InterestScores = %v, %v", sc, err)
	}
	if err := r.ReportBacklog(ctx, "bulk", 0, map[string]int64{"c1": 5}, time.Minute); err != nil {
		t.Fatalf("ReportBacklog: %v", err)
	}
	if n, err := r.Backlog(ctx, "bulk", "c1", 1); err != nil || n != 5 {
		t.Fatalf("Backlog = %d, %v, want 5", n, err)
	}
	if tags, err := r.UserTags(ctx, app, []string{"u1"}); err != nil || !tags["u1"]["vip"] {
		t.Fatalf("UserTags = %v, %v", tags, err)
	}
}
