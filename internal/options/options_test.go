package options

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pushflow/pushflow/connectors/kafkaio"
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
	if diff := cmp.Diff(want, *c, cmpopts.IgnoreUnexported(Common{})); diff != "" {
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

func TestRedisAddr(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "127.0.0.1:6379"},
		{[]string{"--redis_addr=r:6380"}, "r:6380"},
		{[]string{"--redis_tls", "--redis_addr=r:6378", "--redis_username=pf", "--redis_password_file=/s/p"},
			"rediss://pf@r:6378?password_file=%2Fs%2Fp"},
		{[]string{"--redis_ca_file=/ca.pem", "--redis_password_env=REDIS_PASSWORD"},
			"rediss://127.0.0.1:6379?ca_file=%2Fca.pem&password_env=REDIS_PASSWORD"},
		{[]string{"--redis_cluster=a:1, b:2,c:3", "--redis_password_file=/s/p"},
			"redis+cluster://a:1,b:2,c:3?password_file=%2Fs%2Fp"},
		{[]string{"--redis_addr=rediss+cluster://u@a:1,b:2?ca_file=/ca.pem"}, "rediss+cluster://u@a:1,b:2?ca_file=%2Fca.pem"},
		{[]string{"--redis_addr=redis://u@h:1/2?password_file=/x", "--redis_password_env=E"}, "redis://u@h:1/2?password_env=E"},
	} {
		if got := parse(t, tc.args...).RedisAddr; got != tc.want {
			t.Errorf("%q: RedisAddr = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestKafkaSecurity(t *testing.T) {
	c := parse(t, "--kafka_tls", "--kafka_ca_file=/ca.pem", "--kafka_sasl_mechanism=SCRAM-SHA-512",
		"--kafka_sasl_username=pf", "--kafka_sasl_password_env=KAFKA_PASSWORD")
	want := kafkaio.Security{TLS: true, CAFile: "/ca.pem", SASLMechanism: "SCRAM-SHA-512", SASLUsername: "pf", SASLPasswordEnv: "KAFKA_PASSWORD"}
	if diff := cmp.Diff(want, c.KafkaSecurity()); diff != "" {
		t.Errorf("KafkaSecurity() (-want +got):\n%s", diff)
	}
}

func TestValidateSecurity(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		args []string
		want string // "" = valid
	}{
		{[]string{"--kafka_sasl_mechanism=SCRAM-SHA-512", "--kafka_sasl_username=u", "--kafka_sasl_password_file=" + file, "--kafka_tls", "--kafka_ca_file=" + file}, ""},
		{[]string{"--kafka_sasl_mechanism=PLAIN", "--kafka_sasl_username=u", "--kafka_sasl_password_env=P"}, ""},
		{[]string{"--kafka_sasl_mechanism=GSSAPI"}, `--kafka_sasl_mechanism: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got "GSSAPI"`},
		{[]string{"--kafka_sasl_mechanism=PLAIN", "--kafka_sasl_password_file=" + file}, "--kafka_sasl_mechanism=PLAIN: needs --kafka_sasl_username"},
		{[]string{"--kafka_sasl_mechanism=PLAIN", "--kafka_sasl_username=u"}, "needs exactly one of --kafka_sasl_password_file and --kafka_sasl_password_env"},
		{[]string{"--kafka_sasl_username=u"}, "--kafka_sasl_username: needs --kafka_sasl_mechanism"},
		{[]string{"--kafka_sasl_mechanism=PLAIN", "--kafka_sasl_username=u", "--kafka_sasl_password_file=" + missing}, "--kafka_sasl_password_file: open " + missing},
		{[]string{"--kafka_cert_file=" + file}, "--kafka_cert_file and --kafka_key_file: mutual TLS needs both"},
		{[]string{"--kafka_ca_file=" + missing}, "--kafka_ca_file: open"},
		{[]string{"--redis_password_file=" + file, "--redis_tls", "--redis_ca_file=" + file, "--redis_username=u"}, ""},
		{[]string{"--redis_password_file=" + missing}, "--redis_password_file (or password_file=): open"},
		{[]string{"--redis_password_file=" + file, "--redis_password_env=E"}, "--redis_password_file and --redis_password_env: give one"},
		{[]string{"--redis_addr=redis://u:hunter2@h:1"}, "--redis_addr: redisio: a password in the Redis address"},
		{[]string{"--redis_addr=redis://h:1?ca_file=" + file}, "--redis_addr: redisio: Redis ca_file needs TLS"},
		{[]string{"--redis_cluster=a:1,b"}, `--redis_cluster: "b" is not host:port`},
	} {
		err := parse(t, tc.args...).Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%q) = %v, want nil", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("Validate(%q) = %v: shows the password", tc.args, err)
		}
	}
}
