package apnsiotest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
)

// GenerateKey makes a provider token signing key like the ".p8" files Apple
// issues: a P-256 private key in a PKCS#8 "PRIVATE KEY" PEM block, and a
// random 10-character key ID. Register it with WithP8.
func GenerateKey() (keyPEM []byte, keyID string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("apnsiotest: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", fmt.Errorf("apnsiotest: marshal key: %w", err)
	}
	var id [5]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", fmt.Errorf("apnsiotest: key id: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), strings.ToUpper(hex.EncodeToString(id[:])), nil
}

// SignToken makes a provider token (an ES256 JWT) with the given issue time,
// as apns2 does with time.Now(). Tests use it for expired or malformed
// tokens.
func SignToken(keyPEM []byte, keyID, teamID string, issuedAt time.Time) (string, error) {
	key, err := token.AuthKeyFromBytes(keyPEM)
	if err != nil {
		return "", fmt.Errorf("apnsiotest: sign token: %w", err)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": teamID, "iat": issuedAt.Unix()})
	t.Header["kid"] = keyID
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("apnsiotest: sign token: %w", err)
	}
	return s, nil
}

// tokenIdentity is a verified provider token.
type tokenIdentity struct {
	keyID, teamID string
	issuedAt      time.Time
}

// maxTokenSkew is how far in the future a token's iat may be.
const maxTokenSkew = 5 * time.Minute

// maxCachedTokens bounds the verified-token cache; providers reuse one token
// for up to an hour, so a handful of entries is the normal case.
const maxCachedTokens = 4096

// tokenVerifier checks provider tokens. Verifying an ES256 signature costs
// tens of microseconds, so verified tokens are cached by their exact text,
// as APNs does per connection; age is checked on every request.
type tokenVerifier struct {
	keys   map[string]tokenKey
	maxAge time.Duration
	parser *jwt.Parser

	cache  sync.Map // bearer string → tokenIdentity
	cached atomic.Int64
}

func newTokenVerifier(keys map[string]tokenKey, maxAge time.Duration) *tokenVerifier {
	return &tokenVerifier{
		keys:   keys,
		maxAge: maxAge,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}), jwt.WithoutClaimsValidation()),
	}
}

// verify returns "" when the authorization header value carries a valid,
// current provider token, or the APNs reason to reject it.
func (v *tokenVerifier) verify(authorization string, now time.Time) (tokenIdentity, string) {
	if authorization == "" {
		return tokenIdentity{}, apns2.ReasonMissingProviderToken
	}
	scheme, bearer, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || bearer == "" {
		return tokenIdentity{}, apns2.ReasonInvalidProviderToken
	}
	id, ok := v.lookup(bearer)
	if !ok {
		var reason string
		if id, reason = v.parse(bearer); reason != "" {
			return tokenIdentity{}, reason
		}
		v.store(bearer, id)
	}
	switch {
	case now.Sub(id.issuedAt) > v.maxAge:
		return id, apns2.ReasonExpiredProviderToken
	case id.issuedAt.Sub(now) > maxTokenSkew:
		return id, apns2.ReasonInvalidProviderToken
	}
	return id, ""
}

func (v *tokenVerifier) lookup(bearer string) (tokenIdentity, bool) {
	x, ok := v.cache.Load(bearer)
	if !ok {
		return tokenIdentity{}, false
	}
	return x.(tokenIdentity), true
}

func (v *tokenVerifier) store(bearer string, id tokenIdentity) {
	if v.cached.Add(1) > maxCachedTokens {
		v.cache.Clear()
		v.cached.Store(1)
	}
	v.cache.Store(bearer, id)
}

func (v *tokenVerifier) parse(bearer string) (tokenIdentity, string) {
	var id tokenIdentity
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(bearer, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := v.keys[kid]
		if !ok {
			return nil, fmt.Errorf("apnsiotest: unknown key id %q", kid)
		}
		id.keyID, id.teamID = kid, k.teamID
		return k.pub, nil
	})
	if err != nil {
		return tokenIdentity{}, apns2.ReasonInvalidProviderToken
	}
	if iss, _ := claims["iss"].(string); iss != id.teamID {
		return tokenIdentity{}, apns2.ReasonInvalidProviderToken
	}
	iat, ok := claims["iat"].(float64)
	if !ok {
		return tokenIdentity{}, apns2.ReasonInvalidProviderToken
	}
	id.issuedAt = time.Unix(int64(iat), 0)
	return id, ""
}
