package fcmiotest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestVerifyAssertion(t *testing.T) {
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keyJSON, err := s.ServiceAccount("p1")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		PrivateKeyID string `json:"private_key_id"`
		PrivateKey   string `json:"private_key"`
		ClientEmail  string `json:"client_email"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(keyJSON, &file); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(file.PrivateKey))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*rsa.PrivateKey)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	type claims map[string]any
	valid := func() claims {
		return claims{"iss": file.ClientEmail, "aud": file.TokenURI, "scope": ScopeMessaging, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, v any) claims { c := valid(); c[k] = v; return c }
	sign := func(alg, kid string, c claims, signer *rsa.PrivateKey) string {
		h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": kid})
		p, _ := json.Marshal(c)
		unsigned := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
		digest := sha256.Sum256([]byte(unsigned))
		sig, err := rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	tests := []struct {
		name      string
		assertion string
		wantErr   string // "" for valid
	}{
		{"valid", sign("RS256", file.PrivateKeyID, valid(), key), ""},
		{"cloud-platform scope", sign("RS256", file.PrivateKeyID, with("scope", "openid "+ScopeCloudPlatform), key), ""},
		{"wrong algorithm", sign("RS512", file.PrivateKeyID, valid(), key), "algorithm"},
		{"unknown key ID", sign("RS256", "nope", valid(), key), "unknown key ID"},
		{"signed by another key", sign("RS256", file.PrivateKeyID, valid(), other), "signature"},
		{"other issuer", sign("RS256", file.PrivateKeyID, with("iss", "x@y.iam.gserviceaccount.com"), key), "issuer"},
		{"other audience", sign("RS256", file.PrivateKeyID, with("aud", "https://oauth2.googleapis.com/token"), key), "audience"},
		{"expired", sign("RS256", file.PrivateKeyID, with("exp", now.Add(-time.Second).Unix()), key), "expired"},
		{"long-lived", sign("RS256", file.PrivateKeyID, with("exp", now.Add(2*time.Hour).Unix()), key), "short-lived"},
		{"issued in the future", sign("RS256", file.PrivateKeyID, with("iat", now.Add(time.Hour).Unix()), key), "short-lived"},
		{"no send scope", sign("RS256", file.PrivateKeyID, with("scope", "https://www.googleapis.com/auth/datastore"), key), "scope"},
		{"two segments", "a.b", "not a JWT"},
		{"bad base64", "!!.e30.x", "header"},
	}
	for _, tt := range tests {
		acct, err := s.verifyAssertion(tt.assertion, now)
		switch {
		case tt.wantErr == "" && (err != nil || acct.email != file.ClientEmail || acct.project != "p1"):
			t.Errorf("%s: verifyAssertion() = %+v, %v, want the account of p1", tt.name, acct, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: verifyAssertion() = %v, want an error about %q", tt.name, err, tt.wantErr)
		}
	}
}
