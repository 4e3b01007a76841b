// Package redistest starts Redis servers for tests: a real redis-server as a
// child process (Start, StartServer), or an in-process miniredis
// (StartMini).
//
// The child is not daemonized: it lives in our process group, is stopped by
// the cleanup, and on Linux is killed by the kernel if the test binary dies
// first. It never writes to disk (--save "", --appendonly no).
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// SkipEnv, set to "1", makes Start skip the test instead of failing it when
// redis-server is not installed.
const SkipEnv = "PUSHFLOW_SKIP_REDIS"

// ErrNotFound is returned by StartServer when redis-server is not on PATH.
var ErrNotFound = errors.New("redis-server not found on PATH: install it (apt-get install -y redis-server) or run `make test`, which installs it")

// Start starts a redis-server on a free 127.0.0.1 port, waits until it
// answers PING and returns its address; the test's cleanup stops it. Without
// redis-server on PATH it fails the test, or skips it if PUSHFLOW_SKIP_REDIS=1.
func Start(t testing.TB) (addr string) {
	t.Helper()
	addr, stop, err := StartServer()
	if errors.Is(err, ErrNotFound) {
		if os.Getenv(SkipEnv) == "1" {
			t.Skipf("%v (skipping: %s=1)", err, SkipEnv)
		}
		t.Fatalf("%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(stop)
	return addr
}

// StartMini starts an in-process miniredis (the Redis-protocol server the
// embedded dev stack uses) and returns its address; the test's cleanup
// stops it.
func StartMini(t testing.TB) (addr string) {
	t.Helper()
	m := miniredis.RunT(t)
	t.Cleanup(RealTimeTTLs(m))
	return m.Addr()
}

// RealTimeTTLs makes m's keys expire with the wall clock, as on a real
// server: miniredis only counts TTLs down when told to (FastForward). It
// returns a function that stops the clock.
func RealTimeTTLs(m *miniredis.Miniredis) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return func() { close(done); <-finished }
}

// StartServer starts a redis-server like Start, for callers without a
// testing.TB (TestMain, benchmarks' setup, demos). stop kills the server and
// waits for it; it is safe to call more than once. The error wraps
// ErrNotFound when redis-server is not installed.
func StartServer() (addr string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, ErrNotFound
	}
	// A free port can be taken by someone else between our probe and the
	// server's bind: try a few.
	addr, stop, err = startRetry(bin, func(int) ([]string, error) { return nil, nil })
	if err != nil {
		return "", nil, fmt.Errorf("redistest: %w", err)
	}
	return addr, stop, nil
}

// StartArgs is Start with more redis-server arguments (e.g. "--requirepass",
// "secret"). It waits until the server answers on its plaintext port, with
// or without a password.
func StartArgs(t testing.TB, args ...string) (addr string) {
	t.Helper()
	addr, _ = StartTLS(t, "", "", args...)
	return addr
}

// StartTLS starts a redis-server like StartArgs that also accepts TLS, on
// tlsAddr, with the PEM certificate and key given (no client
// certificates); certFile "" = no TLS port.
func StartTLS(t testing.TB, certFile, keyFile string, args ...string) (addr, tlsAddr string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(SkipEnv) == "1" {
			t.Skipf("%v (skipping: %s=1)", ErrNotFound, SkipEnv)
		}
		t.Fatalf("%v", ErrNotFound)
	}
	addr, stop, err := startRetry(bin, func(int) ([]string, error) {
		if certFile == "" {
			return args, nil
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		tlsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return append([]string{"--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
			"--tls-auth-clients", "no"}, args...), nil
	})
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(stop)
	return addr, tlsAddr
}

// startRetry starts a server, picking new ports when one is taken.
// extra returns more arguments for the chosen port.
func startRetry(bin string, extra func(port int) ([]string, error)) (addr string, stop func(), err error) {
	for attempt := 0; ; attempt++ {
		addr, stop, err = start(bin, extra)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == 4 {
			return addr, stop, err
		}
	}
}

var errPortTaken = errors.New("port taken")

func start(bin string, extra func(port int) ([]string, error)) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	more, err := extra(port)
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", os.TempDir(),
		"--loglevel", "warning",
	}
	cmd := exec.Command(bin, append(args, more...)...)
	var out syncBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(addr) == nil {
			return addr, stop, nil
		}
		select {
		case <-exited:
			log := out.String()
			if strings.Contains(log, "Address already in use") {
				return "", nil, fmt.Errorf("redis-server on %s: %w", addr, errPortTaken)
			}
			return "", nil, fmt.Errorf("redis-server on %s exited: %s", addr, strings.TrimSpace(log))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer PING within 10s: %s", addr, strings.TrimSpace(out.String()))
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// A server with a password answers, but not PONG.
	if l := strings.TrimSpace(line); l != "+PONG" && !strings.HasPrefix(l, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// syncBuffer collects the server's output from its copying goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
