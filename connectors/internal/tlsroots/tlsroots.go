// Package tlsroots builds the root CAs a connector trusts: the system's
// plus a private CA from a PEM file (--kafka_ca_file, --redis_ca_file).
package tlsroots

import (
	"crypto/x509"
	"errors"
	"os"
)

// ErrNoCertificate is returned for a file that holds no PEM certificate.
var ErrNoCertificate = errors.New("no PEM certificate in the file")

// WithFile returns the system roots (an empty pool where the system has
// none) plus the certificates of the PEM file at path. A read error is
// returned as os.ReadFile gives it.
func WithFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, ErrNoCertificate
	}
	return pool, nil
}
