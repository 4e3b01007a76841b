package fcmio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushflow/pushflow/connectors/fcmio"
)

func TestConfigValidate(t *testing.T) {
	prod := fcmio.Config{ProjectID: "my-project", CredentialsFile: "/secrets/sa.json"}
	edit := func(c fcmio.Config, f func(*fcmio.Config)) fcmio.Config {
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		in      fcmio.Config
		wantErr string // a substring; "" for valid
	}{
		{"service account", prod, ""},
		{"project from the key file", fcmio.Config{CredentialsFile: "/secrets/sa.json"}, ""},
		{"application default credentials", fcmio.Config{ProjectID: "my-project"}, ""},
		{"test double without auth", fcmio.Config{Endpoint: "http://fcm-double:8080", ProjectID: "demo"}, ""},
		{"test double with auth on loopback", edit(prod, func(c *fcmio.Config) { c.Endpoint = "http://127.0.0.1:4000" }), ""},
		{"localhost", edit(prod, func(c *fcmio.Config) { c.Endpoint = "http://localhost:4000/" }), ""},
		{"explicit Google endpoint", edit(prod, func(c *fcmio.Config) { c.Endpoint = "https://fcm.googleapis.com/" }), ""},
		{"all knobs", edit(prod, func(c *fcmio.Config) {
			c.Concurrency, c.MaxAttempts, c.BaseBackoff, c.MaxBackoff, c.Timeout = 8, 1, time.Millisecond, time.Second, time.Second
		}), ""},
		{"no project", fcmio.Config{Endpoint: "http://127.0.0.1:4000"}, "no project ID"},
		{"project from the key in env", fcmio.Config{CredentialsEnv: "FCM_CREDENTIALS"}, ""},
		{"file and env", edit(prod, func(c *fcmio.Config) { c.CredentialsEnv = "FCM_CREDENTIALS" }), "choose one"},
		{"password in the endpoint", edit(prod, func(c *fcmio.Config) { c.Endpoint = "https://u:pw@fcm-proxy.example.com" }), "password"},
		{"negative max retry-after", edit(prod, func(c *fcmio.Config) { c.MaxRetryAfter = -time.Second }), "negative duration"},
		{"project with a slash", edit(prod, func(c *fcmio.Config) { c.ProjectID = "a/b" }), "not a project ID"},
		{"token in clear over the network", edit(prod, func(c *fcmio.Config) { c.Endpoint = "http://fcm.example.com" }), "plain http"},
		{"endpoint with /v1", edit(prod, func(c *fcmio.Config) { c.Endpoint = "https://fcm.googleapis.com/v1" }), "has a path"},
		{"endpoint without host", edit(prod, func(c *fcmio.Config) { c.Endpoint = "https://" }), "endpoint"},
		{"endpoint of another scheme", edit(prod, func(c *fcmio.Config) { c.Endpoint = "ftp://fcm.googleapis.com" }), "endpoint"},
		{"endpoint with query", edit(prod, func(c *fcmio.Config) { c.Endpoint = "https://fcm.googleapis.com?x=1" }), "endpoint"},
		{"negative concurrency", edit(prod, func(c *fcmio.Config) { c.Concurrency = -1 }), "concurrency"},
		{"negative attempts", edit(prod, func(c *fcmio.Config) { c.MaxAttempts = -1 }), "max attempts"},
		{"negative timeout", edit(prod, func(c *fcmio.Config) { c.Timeout = -time.Second }), "negative duration"},
		{"base over max backoff", edit(prod, func(c *fcmio.Config) { c.BaseBackoff = time.Minute }), "exceeds max backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("%v.Validate() = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("%v.Validate() = %v, want an error about %q", tt.in, err, tt.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "fcmio: config: "):
				t.Errorf("%v.Validate() = %v, want the fcmio: config: prefix", tt.in, err)
			}
		})
	}
}

func TestConfigValidateReportsAll(t *testing.T) {
	err := fcmio.Config{Endpoint: "ftp://x", Concurrency: -1, MaxAttempts: -1}.Validate()
	for _, want := range []string{"endpoint", "no project ID", "concurrency", "max attempts"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want an error about %q", err, want)
		}
	}
}

func TestConfigRedactsSecrets(t *testing.T) {
	const password = "hunter2-Sup3rSecret"
	c := fcmio.Config{Endpoint: "https://user:" + password + "@fcm-proxy.example.com", ProjectID: "my-project", CredentialsFile: "/secrets/sa.json"}

	var textLog, jsonLog bytes.Buffer
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("config", "fcm", c)
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("config", "fcm", c)
	outputs := map[string]string{
		"%v":        fmt.Sprintf("%v", c),
		"%+v":       fmt.Sprintf("%+v", c),
		"%#v":       fmt.Sprintf("%#v", c),
		"&c %v":     fmt.Sprintf("%v", &c),
		"String":    c.String(),
		"slog text": textLog.String(),
		"slog JSON": jsonLog.String(),
		"Validate":  fmt.Sprint(fcmio.Config{Endpoint: "http://user:" + password + "@fcm.example.com/v1", CredentialsFile: "f"}.Validate()),
	}
	for name, out := range outputs {
		if strings.Contains(out, password) {
			t.Errorf("%s of Config = %s, shows the password", name, out)
		}
		if !strings.Contains(out, "fcm") || !strings.Contains(out, "xxxxx") {
			t.Errorf("%s of Config = %s, want the endpoint with its password redacted", name, out)
		}
	}
	if s := c.String(); !strings.Contains(s, "/secrets/sa.json") || !strings.Contains(s, "my-project") {
		t.Errorf("String() = %s, want the credentials file path and project", s)
	}
}

// TestConfigHoldsNoSecret: a Config, as shipped to workers in the job graph
// (JSON, as Beam encodes a DoFn's exported fields) and as printed or logged,
// names where the key is, never the key, also after a Client was made with
// it.
func TestConfigHoldsNoSecret(t *testing.T) {
	const secret = "-----BEGIN PRIVATE KEY-----hunter2"
	key := `{"type":"service_account","project_id":"p","private_key":"` + secret + `"}`
	t.Setenv("FCMIO_TEST_KEY", key)
	keyFile := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []fcmio.Config{
		{Endpoint: "http://127.0.0.1:1", CredentialsFile: keyFile},
		{Endpoint: "http://127.0.0.1:1", CredentialsEnv: "FCMIO_TEST_KEY"},
	} {
		if _, err := fcmio.NewClient(context.Background(), c); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewClient(%v) = %v, want a key error without the key", c, err)
		}
		j, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var jsonLog bytes.Buffer
		slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("config", "fcm", c)
		for name, out := range map[string]string{
			"json.Marshal": string(j),
			"%#v":          fmt.Sprintf("%#v", c),
			"%+v":          fmt.Sprintf("%+v", c),
			"slog JSON":    jsonLog.String(),
		} {
			if strings.Contains(out, "hunter2") {
				t.Errorf("%s of Config = %s, shows the key", name, out)
			}
			if !strings.Contains(out, c.CredentialsFile+c.CredentialsEnv) {
				t.Errorf("%s of Config = %s, want where the key is", name, out)
			}
		}
	}
}
