package apnsio

import (
	"context"
	"testing"

	"github.com/pushflow/pushflow"
)

// TestConnectionsShared: 64 concurrent first sends of a fresh Client share
// its HTTP/2 connection instead of opening one each.
func TestConnectionsShared(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	msgs := make([]Message, 64)
	for i := range msgs {
		msgs[i] = msg(devToken(i))
	}
	for i, r := range c.Send(context.Background(), msgs) {
		if r.Outcome != pushflow.OutcomeSent {
			t.Fatalf("Send() result %d = %+v, want sent", i, r)
		}
	}
	if n := e.srv.Connections(); n > 4 {
		t.Errorf("server accepted %d connections for 64 concurrent sends, want at most 4", n)
	}
}
