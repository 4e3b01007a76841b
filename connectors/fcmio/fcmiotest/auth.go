package fcmiotest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tokenPath is the OAuth 2 token endpoint, the token_uri of ServiceAccount's
// key files.
const tokenPath = "/token"

// Scopes that allow sending (either is enough).
const (
	ScopeMessaging     = "https://www.googleapis.com/auth/firebase.messaging"
	ScopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
)

// AccessTokenLifetime is how long an access token from /token is valid.
const AccessTokenLifetime = time.Hour

// jwtBearerGrant is the grant type of the service-account flow (RFC 7523).
const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

type serviceAccount struct {
	email   string
	project string
	pub     *rsa.PublicKey
}

type accessToken struct {
	email   string
	project string
	expiry  time.Time
}

type authState struct {
	mu       sync.Mutex
	accounts map[string]serviceAccount // by private_key_id
	tokens   map[string]accessToken
	issued   int64
}

func newAuthState() authState {
	return authState{accounts: map[string]serviceAccount{}, tokens: map[string]accessToken{}}
}

// ServiceAccount makes a service account of projectID and returns its key
// file, the JSON Google issues ("type": "service_account", "project_id",
// "private_key_id", "private_key", "client_email", ...), with a fresh RSA key
// and the server's /token endpoint as "token_uri". Google's auth libraries
// (option.WithAuthCredentialsFile) exchange a JWT signed by the key for an
// access token there, which the server requires under WithAuth.
func (s *Server) ServiceAccount(projectID string) ([]byte, error) {
	if projectID == "" {
		return nil, fmt.Errorf("fcmiotest: ServiceAccount: empty project ID")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("fcmiotest: generate service account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("fcmiotest: encode service account key: %w", err)
	}
	var idb [20]byte
	rand.Read(idb[:])
	keyID := hex.EncodeToString(idb[:])
	email := fmt.Sprintf("fcmiotest-%s@%s.iam.gserviceaccount.com", keyID[:8], projectID)

	s.auth.mu.Lock()
	s.auth.accounts[keyID] = serviceAccount{email: email, project: projectID, pub: &key.PublicKey}
	s.auth.mu.Unlock()

	return json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  projectID,
		"private_key_id":              keyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "1" + keyID[:20],
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.URL() + tokenPath,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
}

// TokensIssued is the number of access tokens /token has issued.
func (s *Server) TokensIssued() int64 {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	return s.auth.issued
}

// serveToken is the OAuth 2 token endpoint of the JWT bearer flow: it
// verifies the assertion (RS256 with a ServiceAccount key, iss its email, aud
// the endpoint, a send scope, not expired) and issues an access token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	oauthErr := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		oauthErr(http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != jwtBearerGrant {
		oauthErr(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant type %q", g))
		return
	}
	acct, err := s.verifyAssertion(r.PostForm.Get("assertion"), time.Now())
	if err != nil {
		oauthErr(http.StatusBadRequest, "invalid_grant", err.Error())
		return
	}

	var b [32]byte
	rand.Read(b[:])
	tok := "ya29.fcmiotest-" + base64.RawURLEncoding.EncodeToString(b[:])
	s.auth.mu.Lock()
	s.auth.tokens[tok] = accessToken{email: acct.email, project: acct.project, expiry: time.Now().Add(AccessTokenLifetime)}
	s.auth.issued++
	s.auth.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok,
		"expires_in":   int64(AccessTokenLifetime / time.Second),
		"token_type":   "Bearer",
	})
}

// verifyAssertion checks a service account's signed JWT.
func (s *Server) verifyAssertion(assertion string, now time.Time) (serviceAccount, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return serviceAccount{}, errors.New("assertion is not a JWT")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
		Iat   int64  `json:"iat"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return serviceAccount{}, fmt.Errorf("JWT header: %v", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return serviceAccount{}, fmt.Errorf("JWT claims: %v", err)
	}
	if header.Alg != "RS256" {
		return serviceAccount{}, fmt.Errorf("JWT algorithm %q, want RS256", header.Alg)
	}
	s.auth.mu.Lock()
	acct, ok := s.auth.accounts[header.Kid]
	s.auth.mu.Unlock()
	if !ok {
		return serviceAccount{}, fmt.Errorf("invalid JWT signature: unknown key ID %q", header.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return serviceAccount{}, fmt.Errorf("invalid JWT signature: %v", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(acct.pub, crypto.SHA256, digest[:], sig); err != nil {
		return serviceAccount{}, errors.New("invalid JWT signature")
	}
	switch {
	case claims.Iss != acct.email:
		return serviceAccount{}, fmt.Errorf("JWT issuer %q is not the key's service account", claims.Iss)
	case claims.Aud != s.URL()+tokenPath:
		return serviceAccount{}, fmt.Errorf("JWT audience %q is not this token endpoint", claims.Aud)
	case claims.Exp <= now.Unix():
		return serviceAccount{}, errors.New("invalid JWT: expired")
	case claims.Iat > now.Add(5*time.Minute).Unix() || claims.Exp-claims.Iat > int64(time.Hour/time.Second):
		return serviceAccount{}, errors.New("invalid JWT: token must be short-lived and issued in a reasonable timeframe")
	}
	scopes := strings.Fields(claims.Scope)
	for _, sc := range scopes {
		if sc == ScopeMessaging || sc == ScopeCloudPlatform {
			return acct, nil
		}
	}
	return serviceAccount{}, fmt.Errorf("scope %q allows no FCM sends (want %s or %s)", claims.Scope, ScopeMessaging, ScopeCloudPlatform)
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// authenticate checks a send's bearer token under WithAuth and returns the
// service account it stands for, or the answer refusing it.
func (s *Server) authenticate(r *http.Request, project string) (string, *answer) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return "", &answer{status: http.StatusUnauthorized, message: "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential."}
	}
	s.auth.mu.Lock()
	at, ok := s.auth.tokens[tok]
	s.auth.mu.Unlock()
	if !ok || time.Now().After(at.expiry) {
		return "", &answer{status: http.StatusUnauthorized, message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."}
	}
	if at.project != project {
		return "", &answer{status: http.StatusForbidden, message: fmt.Sprintf("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist).", project)}
	}
	return at.email, nil
}
