// Package breaker is a circuit breaker per key (a provider and app, such as
// "apns/com.example.news"): after Threshold consecutive transient failures
// it opens and refuses sends for a cooldown, then lets one probe through
// (half-open); the probe's success closes it, its failure opens it again
// for twice the cooldown, up to MaxCooldown.
//
//	b := breaker.New(breaker.Config{OnChange: func(key string, from, to breaker.State) {
//		slog.Warn("send: breaker", "key", key, "from", from, "to", to)
//	}}, nil)
//	if ok, retryAt := b.Allow("apns/" + app); !ok {
//		// hand the message to the retry lane, due at retryAt
//	}
//	res := client.Push(ctx, m)
//	b.Record("apns/"+app, !res.Retryable)
//
// A Breaker is runtime state, safe for concurrent use: build it in a
// DoFn's Setup, not in a field shipped to workers (Config.OnChange is a
// func).
package breaker

import (
	"sync"
	"time"
)

// State is a breaker's state.
type State int

const (
	// Closed lets every send through, counting consecutive transient
	// failures.
	Closed State = iota
	// Open refuses sends until its cooldown ends.
	Open
	// HalfOpen lets one probe through and refuses the others until the
	// probe's outcome is recorded.
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "State(?)"
}

// Defaults of Config's zero fields.
const (
	DefaultThreshold   = 20
	DefaultCooldown    = 5 * time.Second
	DefaultMaxCooldown = time.Minute
)

// Config configures a Breaker. Zero fields take the defaults above.
type Config struct {
	// Threshold is the number of consecutive transient failures that opens
	// a closed breaker (default 20).
	Threshold int
	// Cooldown is how long a breaker stays open the first time (default
	// 5s); each failed probe doubles it, up to MaxCooldown (default 1m). A
	// probe's success resets it.
	Cooldown, MaxCooldown time.Duration
	// OnChange, when set, is called after every state change, outside the
	// Breaker's lock (it may call the Breaker): to log, and to count a
	// metric when a breaker opens.
	OnChange func(key string, from, to State)
}

// Breaker holds one circuit breaker per key; a key's breaker starts
// closed.
type Breaker struct {
	cfg Config
	now func() time.Time

	mu   sync.Mutex
	keys map[string]*circuit
}

type circuit struct {
	state    State
	failures int           // consecutive transient failures, while closed
	cooldown time.Duration // of the current or next opening
	until    time.Time     // open: end of the cooldown; half-open: when a lost probe may be replaced
	probing  bool          // half-open: a probe is out
}

type change struct {
	key      string
	from, to State
}

// New returns a Breaker with cfg's defaults filled in, on the clock now
// (time.Now when nil).
func New(cfg Config, now func() time.Time) *Breaker {
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	if cfg.MaxCooldown <= 0 {
		cfg.MaxCooldown = DefaultMaxCooldown
	}
	cfg.MaxCooldown = max(cfg.MaxCooldown, cfg.Cooldown)
	if now == nil {
		now = time.Now
	}
	return &Breaker{cfg: cfg, now: now, keys: map[string]*circuit{}}
}

// Allow reports whether a send for key may go now. When it may not,
// retryAt is when to ask again: the end of the cooldown, or of the probe's
// grace while another probe is out. An open breaker whose cooldown has
// ended turns half-open and lets this caller through as its probe; the
// caller then Records the probe's outcome.
func (b *Breaker) Allow(key string) (ok bool, retryAt time.Time) {
	b.mu.Lock()
	now := b.now()
	c := b.keys[key]
	if c == nil {
		b.mu.Unlock()
		return true, time.Time{}
	}
	var ch *change
	switch c.state {
	case Closed:
		ok = true
	case Open:
		if now.Before(c.until) {
			retryAt = c.until
			break
		}
		ch = &change{key, Open, HalfOpen}
		c.state = HalfOpen
		fallthrough
	case HalfOpen:
		// A probe that never reports back is replaced after a cooldown.
		if c.probing && now.Before(c.until) {
			retryAt = c.until
			break
		}
		c.probing, c.until, ok = true, now.Add(c.cooldown), true
	}
	b.mu.Unlock()
	b.notify(ch)
	return ok, retryAt
}

// Record records the outcome of a send Allow let through for key: success
// is false for a transient failure (a Result with Retryable set: 429, 5xx,
// a timeout, no connection) and true for anything else, permanent failures
// included, since the provider answered. Outcomes recorded while the
// breaker is open, of sends let through before it opened, are ignored.
func (b *Breaker) Record(key string, success bool) {
	b.mu.Lock()
	now := b.now()
	c := b.keys[key]
	if c == nil {
		if success {
			b.mu.Unlock()
			return
		}
		c = &circuit{cooldown: b.cfg.Cooldown}
		b.keys[key] = c
	}
	var ch *change
	switch c.state {
	case Closed:
		if success {
			c.failures = 0
			break
		}
		c.failures++
		if c.failures >= b.cfg.Threshold {
			ch = &change{key, Closed, Open}
			c.state, c.failures, c.until = Open, 0, now.Add(c.cooldown)
		}
	case HalfOpen:
		if success {
			ch = &change{key, HalfOpen, Closed}
			c.state, c.failures, c.probing, c.cooldown = Closed, 0, false, b.cfg.Cooldown
			break
		}
		ch = &change{key, HalfOpen, Open}
		c.cooldown = min(2*c.cooldown, b.cfg.MaxCooldown)
		c.state, c.probing, c.until = Open, false, now.Add(c.cooldown)
	}
	if c.state == Closed && c.failures == 0 {
		delete(b.keys, key) // a closed breaker with no failures is the default
	}
	b.mu.Unlock()
	b.notify(ch)
}

// State is key's breaker's state now. An open breaker whose cooldown has
// ended still reads Open until the next Allow makes it half-open.
func (b *Breaker) State(key string) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.keys[key]; c != nil {
		return c.state
	}
	return Closed
}

func (b *Breaker) notify(ch *change) {
	if ch != nil && b.cfg.OnChange != nil {
		b.cfg.OnChange(ch.key, ch.from, ch.to)
	}
}
