package redisio

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Workers ride out a Redis outage instead of failing: on Prism a failed
// bundle fails the whole job, and elsewhere a retried bundle would only meet
// the same outage. A Registry made by Open therefore retries every command
// (and pipeline) that failed because Redis could not be reached, or is
// still loading its data after a restart, with backoff from 50 ms up to 2 s,
// until it succeeds or the caller's context ends: the pipeline stalls while
// Redis is away and resumes when it is back. Errors Redis answered (a wrong
// type, a script error) are returned at once.
//
// A command whose connection broke after Redis applied it but before the
// answer came back is applied twice. Every write pushflow makes on the send
// path is safe to repeat (claims are SET NX, recorded outcomes SET XX,
// ledger admission HSETNX); counters (frequency, ledger units) may be off
// by that command, which the ledger tolerates (a unit counted twice only
// delays settling an entry: it is replayed, not lost).

// stalls counts commands that had to wait for Redis, for tests and logs.
var stalls atomic.Int64

// Stalls returns how many commands of this process had to wait for Redis.
func Stalls() int64 { return stalls.Load() }

// stallHook is the go-redis hook that retries unreachable-Redis failures.
type stallHook struct {
	addr string
	// maxBackoff bounds the wait between two attempts.
	maxBackoff time.Duration
	// lastLog is when an outage was last logged (unix ns), so a long one
	// logs every 10 s, not per command.
	lastLog atomic.Int64
	// talked is set once a command succeeded. Before that, a connection
	// Redis closes (rather than refuses) is a misconfiguration — plaintext
	// to a TLS port — and is returned at once, not waited out.
	talked atomic.Bool
}

func (h *stallHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *stallHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return h.retry(ctx, cmd.Name(), func() error {
			cmd.SetErr(nil)
			return next(ctx, cmd)
		})
	}
}

func (h *stallHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return h.retry(ctx, "pipeline", func() error {
			for _, c := range cmds {
				c.SetErr(nil)
			}
			err := next(ctx, cmds)
			if err == nil {
				// A pipeline reports per command: the first unreachable
				// error among them is the pipeline's.
				for _, c := range cmds {
					if e := c.Err(); unreachable(e) {
						return e
					}
				}
			}
			return err
		})
	}
}

func (h *stallHook) retry(ctx context.Context, what string, do func() error) error {
	backoff := 50 * time.Millisecond
	var start time.Time
	for {
		err := do()
		if err == nil {
			h.talked.Store(true)
		}
		if !unreachable(err) || ctx.Err() != nil || (!h.talked.Load() && !refused(err)) {
			if !start.IsZero() && err == nil {
				slog.InfoContext(ctx, "redis: reachable again", "addr", h.addr, "waited", time.Since(start).Round(time.Millisecond))
			}
			return err
		}
		if start.IsZero() {
			start = time.Now()
			stalls.Add(1)
		}
		if now := time.Now().UnixNano(); now-h.lastLog.Load() > int64(10*time.Second) {
			h.lastLog.Store(now)
			slog.WarnContext(ctx, "redis: unreachable, waiting for it", "addr", h.addr, "command", what, "err", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, h.maxBackoff)
	}
}

// refused reports whether err is a refused connection (nothing listens:
// Redis is down or not started yet).
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}

// unreachable reports whether err means Redis could not be reached (or is
// not ready), as opposed to an answer.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"LOADING", "connection refused", "connection reset", "broken pipe", "i/o timeout", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
