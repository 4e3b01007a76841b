package redisio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow/connectors/internal/tlsroots"
)

// Addr is a parsed Redis address: what [Open] connects to. Its string form
// ([Addr.String], [ParseAddr]) is either a plain host:port or a URL
//
//	redis://[user@]host:port[/db][?password_file=/path|password_env=NAME][&ca_file=/path]
//	rediss://…                        TLS
//	redis+cluster://[user@]h1:p1,h2:p2[?…]   Redis Cluster, seed nodes
//	rediss+cluster://…                 Redis Cluster over TLS
//
// It names where secrets are, never a secret: it travels in the pipeline
// graph. The password is read by [Addr.Options], on the worker.
type Addr struct {
	Cluster bool
	TLS     bool
	// Addrs are host:port; one unless Cluster.
	Addrs    []string
	Username string
	// DB is the database number; 0 on a cluster.
	DB int
	// PasswordFile is a file holding the password (one trailing newline is
	// ignored), PasswordEnv the name of an environment variable holding it;
	// at most one.
	PasswordFile string
	PasswordEnv  string
	// CAFile is a PEM file of extra root certificates; needs TLS.
	CAFile string
}

// ErrPasswordInAddr is returned by ParseAddr for an address with a password.
var ErrPasswordInAddr = errors.New("redisio: a password in the Redis address would land in the job graph and the logs: put it in a file (--redis_password_file, or password_file= in the URL) or an environment variable (--redis_password_env, or password_env=)")

// ParseAddr parses a plain host:port or a redis://, rediss://,
// redis+cluster:// or rediss+cluster:// URL (see [Addr]).
func ParseAddr(s string) (Addr, error) {
	var a Addr
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		if _, _, err := net.SplitHostPort(s); err != nil || strings.ContainsAny(s, "/@?,") {
			return a, fmt.Errorf("redisio: Redis address %q: want host:port or a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL", s)
		}
		a.Addrs = []string{s}
		return a, nil
	}
	switch scheme {
	case "redis":
	case "rediss":
		a.TLS = true
	case "redis+cluster":
		a.Cluster = true
	case "rediss+cluster":
		a.Cluster, a.TLS = true, true
	default:
		return a, fmt.Errorf("redisio: Redis address %q: unknown scheme %q: want redis, rediss, redis+cluster or rediss+cluster", s, scheme)
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	if user, h, ok := strings.Cut(hosts, "@"); ok {
		if strings.Contains(user, ":") {
			return Addr{}, ErrPasswordInAddr
		}
		u, err := url.PathUnescape(user)
		if err != nil {
			return a, fmt.Errorf("redisio: Redis address: user name: %w", err)
		}
		a.Username, hosts = u, h
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			return a, fmt.Errorf("redisio: Redis address %q: %q is not host:port", s, h)
		}
		a.Addrs = append(a.Addrs, h)
	}
	switch {
	case len(a.Addrs) == 0:
		return a, fmt.Errorf("redisio: Redis address %q: no host:port", s)
	case len(a.Addrs) > 1 && !a.Cluster:
		return a, fmt.Errorf("redisio: Redis address %q: several hosts need redis+cluster:// or rediss+cluster://", s)
	}
	if path != "" {
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 {
			return a, fmt.Errorf("redisio: Redis address %q: database %q is not a number", s, path)
		}
		if a.Cluster && db != 0 {
			return a, fmt.Errorf("redisio: Redis address %q: a cluster has database 0 only", s)
		}
		a.DB = db
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return a, fmt.Errorf("redisio: Redis address %q: %w", s, err)
	}
	for k, v := range q {
		switch k {
		case "password_file":
			a.PasswordFile = v[len(v)-1]
		case "password_env":
			a.PasswordEnv = v[len(v)-1]
		case "ca_file":
			a.CAFile = v[len(v)-1]
		case "password":
			return Addr{}, ErrPasswordInAddr
		default:
			return a, fmt.Errorf("redisio: Redis address %q: unknown parameter %q: want password_file, password_env or ca_file", s, k)
		}
	}
	return a, a.Validate()
}

// Validate checks a without reading any file.
func (a Addr) Validate() error {
	switch {
	case len(a.Addrs) == 0:
		return errors.New("redisio: Redis address without host:port")
	case len(a.Addrs) > 1 && !a.Cluster:
		return errors.New("redisio: several Redis hosts need Cluster")
	case a.PasswordFile != "" && a.PasswordEnv != "":
		return errors.New("redisio: Redis password_file and password_env are exclusive")
	case a.CAFile != "" && !a.TLS:
		return errors.New("redisio: Redis ca_file needs TLS (rediss://)")
	}
	return nil
}

// String is the canonical form: the plain host:port when a is a
// plaintext, unauthenticated single server on database 0, a URL otherwise.
func (a Addr) String() string {
	if !a.Cluster && !a.TLS && a.Username == "" && a.DB == 0 && a.PasswordFile == "" && a.PasswordEnv == "" && a.CAFile == "" && len(a.Addrs) == 1 {
		return a.Addrs[0]
	}
	var b strings.Builder
	b.WriteString("redis")
	if a.TLS {
		b.WriteString("s")
	}
	if a.Cluster {
		b.WriteString("+cluster")
	}
	b.WriteString("://")
	if a.Username != "" {
		b.WriteString(url.PathEscape(a.Username) + "@")
	}
	b.WriteString(strings.Join(a.Addrs, ","))
	if a.DB != 0 {
		b.WriteString("/" + strconv.Itoa(a.DB))
	}
	q := url.Values{}
	for k, v := range map[string]string{"password_file": a.PasswordFile, "password_env": a.PasswordEnv, "ca_file": a.CAFile} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(q) > 0 {
		b.WriteString("?" + q.Encode())
	}
	return b.String()
}

// password reads the password, "" without one.
func (a Addr) password() (string, error) {
	switch {
	case a.PasswordFile != "":
		b, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("redisio: read the Redis password file: %w", err)
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
	case a.PasswordEnv != "":
		p, ok := os.LookupEnv(a.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("redisio: the Redis password environment variable %s is not set on this worker", a.PasswordEnv)
		}
		return p, nil
	}
	return "", nil
}

func (a Addr) tlsConfig() (*tls.Config, error) {
	if !a.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.CAFile != "" {
		pool, err := tlsroots.WithFile(a.CAFile)
		if errors.Is(err, tlsroots.ErrNoCertificate) {
			return nil, fmt.Errorf("redisio: the Redis CA file %s holds no PEM certificate", a.CAFile)
		}
		if err != nil {
			return nil, fmt.Errorf("redisio: read the Redis CA file: %w", err)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Client makes the go-redis client a names: a *redis.ClusterClient for a
// cluster, a *redis.Client otherwise, reading the password and the CA now.
// Connection and authentication errors of its commands tell what to check.
func (a Addr) Client() (redis.UniversalClient, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	pass, err := a.password()
	if err != nil {
		return nil, err
	}
	tc, err := a.tlsConfig()
	if err != nil {
		return nil, err
	}
	// ContextTimeoutEnabled: a caller's deadline (the pacer bounds its
	// backlog reports by a slot) also bounds socket reads and writes.
	var c redis.UniversalClient
	if a.Cluster {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: a.Addrs, Username: a.Username, Password: pass,
			TLSConfig: tc, ContextTimeoutEnabled: true})
	} else {
		c = redis.NewClient(&redis.Options{Addr: a.Addrs[0], Username: a.Username, Password: pass, DB: a.DB,
			TLSConfig: tc, ContextTimeoutEnabled: true})
	}
	c.AddHook(explainHook{a})
	return c, nil
}

// failingClient is the client of an Open whose address is invalid: every
// command fails with err.
func failingClient(err error) redis.UniversalClient {
	return redis.NewClient(&redis.Options{Addr: "invalid:0", MaxRetries: -1,
		Dialer: func(context.Context, string, string) (net.Conn, error) { return nil, err }})
}

// explainHook rewrites the errors of connecting and authenticating into
// ones that tell what to check.
type explainHook struct{ a Addr }

func (h explainHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		var netErr net.Error
		switch {
		case err == nil:
		case h.a.TLS && errors.As(err, &netErr) && netErr.Timeout():
			// A plaintext port never answers a TLS ClientHello.
			err = fmt.Errorf("redisio: Redis at %s did not answer the TLS handshake: is that its TLS port (or drop --redis_tls / use redis://)? %w", addr, err)
		default:
			err = h.explain(addr, err)
		}
		return c, err
	}
}

func (h explainHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if e := h.explain(strings.Join(h.a.Addrs, ","), err); e != err {
			cmd.SetErr(e)
			err = e
		}
		return err
	}
}

func (h explainHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if e := h.explain(strings.Join(h.a.Addrs, ","), cmd.Err()); e != cmd.Err() {
				cmd.SetErr(e)
			}
		}
		if e := h.explain(strings.Join(h.a.Addrs, ","), err); e != err {
			err = e
		}
		return err
	}
}

// ErrAuth is wrapped by the errors of commands the server refused because
// the client is not authenticated, or with the wrong password.
var ErrAuth = errors.New("redisio: Redis authentication failed")

func (h explainHook) explain(addr string, err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, ErrAuth) || strings.HasPrefix(err.Error(), "redisio: ") {
		return err
	}
	msg := err.Error()
	user := h.a.Username
	if user == "" {
		user = "default"
	}
	switch {
	case strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "ERR AUTH") ||
		strings.HasPrefix(msg, "ERR invalid password") || strings.HasPrefix(msg, "ERR Client sent AUTH"):
		return fmt.Errorf("%w for user %q at %s: are --redis_username and --redis_password_file (or --redis_password_env) right? %w", ErrAuth, user, addr, err)
	}
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &host), errors.As(err, &verify):
		ca := "the system roots only (no --redis_ca_file)"
		if h.a.CAFile != "" {
			ca = "--redis_ca_file " + h.a.CAFile
		}
		return fmt.Errorf("redisio: Redis at %s: its TLS certificate was not accepted: is it signed by a CA in %s, and issued for that host name? %w", addr, ca, err)
	case errors.As(err, &header):
		return fmt.Errorf("redisio: Redis at %s does not speak TLS: drop --redis_tls (or use redis://), or use its TLS port: %w", addr, err)
	case !h.a.TLS && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)):
		return fmt.Errorf("redisio: Redis at %s closed the connection: if that port speaks TLS, set --redis_tls (or use rediss://): %w", addr, err)
	}
	return err
}
