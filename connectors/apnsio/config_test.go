package apnsio_test

import (
	"bytes"
	"fmt"
	"log/slog"
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
		{"certificate auth", apnsio.Config{CertFile: "cert.p12", CertPassword: "pw"}, ""},
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
		{"password without cert", edit(token, func(c *apnsio.Config) { c.CertPassword = "pw" }), "cert password"},
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

func TestConfigRedactsSecrets(t *testing.T) {
	const password = "hunter2-Sup3rSecret"
	c := apnsio.Config{Endpoint: "https://api.push.apple.com", CertFile: "/secrets/push.p12", CertPassword: password}

	var textLog, jsonLog bytes.Buffer
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("config", "apns", c)
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("config", "apns", c)
	outputs := map[string]string{
		"%v":        fmt.Sprintf("%v", c),
		"%+v":       fmt.Sprintf("%+v", c),
		"%#v":       fmt.Sprintf("%#v", c),
		"%s":        c.String(),
		"&c %v":     fmt.Sprintf("%v", &c),
		"String":    c.String(),
		"slog text": textLog.String(),
		"slog JSON": jsonLog.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, password) {
			t.Errorf("%s of Config = %s, shows the cert password", name, out)
		}
		if !strings.Contains(out, "REDACTED") || !strings.Contains(out, "/secrets/push.p12") {
			t.Errorf("%s of Config = %s, want the cert file and REDACTED for the password", name, out)
		}
	}

	// An unset password prints as unset, not as REDACTED.
	if s := (apnsio.Config{KeyFile: "k.p8"}).String(); strings.Contains(s, "REDACTED") {
		t.Errorf("Config without password String() = %s, want no REDACTED", s)
	}
}
