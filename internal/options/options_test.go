package options

import (
	"flag"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func parse(t *testing.T, args ...string) *Common {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c := Register(fs, "pushflow-test")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := parse(t)
	want := Common{
		RequestsTopic: "push.requests", DevicesTopic: "push.devices", ClicksTopic: "push.clicks",
		DeliveriesTopic: "push.deliveries", DeadLetterTopic: "push.deadletter",
		RedisAddr: "127.0.0.1:6379", Group: "pushflow-test", Start: "committed", LogLevel: "info",
	}
	if diff := cmp.Diff(want, *c); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if !c.DevMode() || c.Validate() != nil {
		t.Errorf("defaults: DevMode() = %v, Validate() = %v, want true, nil", c.DevMode(), c.Validate())
	}
}

func TestBrokers(t *testing.T) {
	c := parse(t, "--kafka_brokers= a:9092, ,b:9092 ")
	if got, want := c.Brokers(), []string{"a:9092", "b:9092"}; !cmp.Equal(got, want) {
		t.Errorf("Brokers() = %q, want %q", got, want)
	}
	if c.DevMode() {
		t.Error("DevMode() = true with brokers set")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" = valid
	}{
		{[]string{"--until=latest"}, ""},
		{[]string{"--until=tomorrow"}, `--until: want "" or "latest"`},
		{[]string{"--log_level=loud"}, "--log_level: want debug, info, warn or error"},
		{[]string{"--requests_topic= "}, "--requests_topic: must not be empty"},
		{[]string{"--redis_addr="}, "--redis_addr: must not be empty"},
	} {
		err := parse(t, tc.args...).Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%q) = %v, want nil", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
