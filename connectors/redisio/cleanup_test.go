package redisio

import (
	"context"
	"testing"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/redis/go-redis/v9"
)

// TestCleanupComparesEntry checks the compare-and-delete that takes a moved
// device from its previous owner: an entry written after the move (by a
// concurrent register of the previous owner) survives.
func TestCleanupComparesEntry(t *testing.T) {
	const app = "com.example.news"
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	tests := []struct {
		name           string
		token, updated string // the entry the move displaced
		wantKept       bool
	}{
		{"entry as displaced", "tokA", t1.Format(timeLayout), false},
		{"entry rewritten since", "tokA", t0.Format(timeLayout), true},
		{"token changed since", "tokB", t1.Format(timeLayout), true},
	}
	for _, b := range []struct {
		name  string
		start func(testing.TB) string
	}{{"redis-server", redistest.Start}, {"miniredis", redistest.StartMini}} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			c := redis.NewClient(&redis.Options{Addr: b.start(t)})
			defer c.Close()
			r := New(c)
			for _, tt := range tests {
				err := r.Apply(ctx, []pushflow.DeviceEvent{{Op: pushflow.OpRegister, App: app, UserID: "u1", DeviceID: "d1", Token: "tokA", Platform: "ios", At: t1}})
				if err != nil {
					t.Fatal(err)
				}
				cl := &cleanup{owners: []staleOwner{{dev: ref{app, "d1"}, user: "u1", token: tt.token, updated: tt.updated}}}
				if err := r.applyCleanup(ctx, cl); err != nil {
					t.Fatal(err)
				}
				got, err := r.UserDevices(ctx, app, []string{"u1"})
				if err != nil {
					t.Fatal(err)
				}
				if kept := len(got["u1"]) == 1; kept != tt.wantKept {
					t.Errorf("%s: u1's entry kept = %v, want %v", tt.name, kept, tt.wantKept)
				}
			}
		})
	}
}
