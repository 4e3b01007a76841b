package apnsio_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushflow/pushflow/connectors/apnsio"
)

func TestConfigValidate(t *testing.T) {
	token := apnsio.Config{KeyFile: "AuthKey.p8", KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ"}
	edit := func(c apnsio.Config, f func(*apnsio.Config)) apnsio.Config {
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		in      apnsio.Config
		wantErr string // a substring; "" for valid
	}{
		{"token auth", token, ""},
		{"certificate auth", apnsio.Config{CertFile: "cert.p12"}, ""},
		{"certificate auth, password file", apnsio.Config{CertFile: "cert.p12", CertPasswordFile: "/secrets/pw"}, ""},
		{"certificate auth, password env", apnsio.Config{CertFile: "cert.p12", CertPasswordEnv: "APNS_CERT_PASSWORD"}, ""},
		{"two password sources", apnsio.Config{CertFile: "cert.p12", CertPasswordFile: "/secrets/pw", CertPasswordEnv: "APNS_CERT_PASSWORD"}, "choose one"},
		{"negative max retry-after", edit(token, func(c *apnsio.Config) { c.MaxRetryAfter = -time.Second }), "negative duration"},
		{"sandbox endpoint with slash", edit(token, func(c *apnsio.Config) { c.Endpoint = "https://api.sandbox.push.apple.com/" }), ""},
		{"test server endpoint", edit(token, func(c *apnsio.Config) { c.Endpoint = "https://127.0.0.1:4443" }), ""},
		{"all knobs", edit(token, func(c *apnsio.Config) {
			c.Concurrency, c.MaxAttempts, c.BaseBackoff, c.MaxBackoff, c.Timeout = 8, 1, time.Millisecond, time.Second, time.Second
		}), ""},
		{"no credentials", apnsio.Config{}, "no credentials"},
		{"both auths", edit(token, func(c *apnsio.Config) { c.CertFile = "cert.pem" }), "choose one"},
		{"no key file", edit(token, func(c *apnsio.Config) { c.KeyFile = "" }), "key file"},
		{"no key ID", edit(token, func(c *apnsio.Config) { c.KeyID = "" }), "key ID"},
		{"no team ID", edit(token, func(c *apnsio.Config) { c.TeamID = "" }), "team ID"},
		{"password file without cert", edit(token, func(c *apnsio.Config) { c.CertPasswordFile = "/secrets/pw" }), "cert password"},
		{"password env without cert", edit(token, func(c *apnsio.Config) { c.CertPasswordEnv = "APNS_CERT_PASSWORD" }), "cert password"},
		{"http endpoint", edit(token, func(c *apnsio.Config) { c.Endpoint = "http://api.push.apple.com" }), "endpoint"},
		{"endpoint with path", edit(token, func(c *apnsio.Config) { c.Endpoint = "https://api.push.apple.com/3/device" }), "endpoint"},
		{"endpoint without host", edit(token, func(c *apnsio.Config) { c.Endpoint = "https://" }), "endpoint"},
		{"negative concurrency", edit(token, func(c *apnsio.Config) { c.Concurrency = -1 }), "concurrency"},
		{"negative attempts", edit(token, func(c *apnsio.Config) { c.MaxAttempts = -1 }), "max attempts"},
		{"negative timeout", edit(token, func(c *apnsio.Config) { c.Timeout = -time.Second }), "negative duration"},
		{"base over max backoff", edit(token, func(c *apnsio.Config) { c.BaseBackoff = time.Minute }), "exceeds max backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("%v.Validate() = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("%v.Validate() = %v, want an error about %q", tt.in, err, tt.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "apnsio: config: "):
				t.Errorf("%v.Validate() = %v, want the apnsio: config: prefix", tt.in, err)
			}
		})
	}
}

// TestConfigHoldsNoSecret: a Config, as shipped to workers in the job graph
// (JSON, as Beam encodes a DoFn's exported fields) and as printed or logged,
// names where the password is, never the password, also after a Client was
// made with it.
func TestConfigHoldsNoSecret(t *testing.T) {
	const password = "hunter2-Sup3rSecret"
	dir := t.TempDir()
	passwordFile := filepath.Join(dir, "apns-password")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("APNSIO_TEST_PASSWORD", password)
	certFile := filepath.Join(dir, "push.p12")
	if err := os.WriteFile(certFile, []byte("not pkcs12"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []apnsio.Config{
		{Endpoint: "https://api.push.apple.com", CertFile: certFile, CertPasswordFile: passwordFile},
		{Endpoint: "https://api.push.apple.com", CertFile: certFile, CertPasswordEnv: "APNSIO_TEST_PASSWORD"},
	} {
		if _, err := apnsio.NewClient(c); err == nil || strings.Contains(err.Error(), password) {
			t.Errorf("NewClient(%v) = %v, want a load error without the password", c, err)
		}
		j, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var textLog, jsonLog bytes.Buffer
		slog.New(slog.NewTextHandler(&textLog, nil)).Info("config", "apns", c)
		slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("config", "apns", c)
		outputs := map[string]string{
			"json.Marshal": string(j),
			"%v":           fmt.Sprintf("%v", c),
			"%+v":          fmt.Sprintf("%+v", c),
			"%#v":          fmt.Sprintf("%#v", c),
			"&c %v":        fmt.Sprintf("%v", &c),
			"slog text":    textLog.String(),
			"slog JSON":    jsonLog.String(),
		}
		where := c.CertPasswordFile + c.CertPasswordEnv
		for name, out := range outputs {
			if strings.Contains(out, password) {
				t.Errorf("%s of Config = %s, shows the cert password", name, out)
			}
			if !strings.Contains(out, where) || !strings.Contains(out, certFile) {
				t.Errorf("%s of Config = %s, want the cert file and %s", name, out, where)
			}
		}
	}
}
