package redisio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/redis/go-redis/v9"
)

// Defaults of the options.
const (
	DefaultKeyPrefix    = "pf:"
	DefaultDedupTTL     = 24 * time.Hour
	DefaultFrequencyTTL = 48 * time.Hour
)

// ErrInvalidEvent is wrapped by Apply when an event cannot be applied (an
// unknown op or a missing identifier). Apply checks every event before it
// writes anything.
var ErrInvalidEvent = errors.New("invalid device event")

// timeLayout is RFC 3339 with a fixed-width fraction, so stored times compare
// as strings (and equal times are equal strings).
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Registry is the Redis device registry and the filter's state. It is safe
// for concurrent use; it holds no context and no per-call state.
type Registry struct {
	c        redis.UniversalClient
	owned    bool // made by Open: Close closes c
	k        keys
	dedupTTL time.Duration
	freqTTL  time.Duration
	now      func() time.Time
}

// Option configures a Registry.
type Option func(*Registry)

// WithKeyPrefix prefixes every key (default "pf:"). It lets several
// registries share one Redis, and tests isolate themselves. The prefix must
// not contain '{' or '}'.
func WithKeyPrefix(p string) Option { return func(r *Registry) { r.k.prefix = p } }

// WithDedupTTL sets how long ClaimOwners remembers a key (default 24h). It
// must cover the longest time a request can be redelivered.
func WithDedupTTL(d time.Duration) Option { return func(r *Registry) { r.dedupTTL = d } }

// WithFrequencyTTL sets the lifetime of a frequency counter, counted from
// its first increment (default 48h: a day in any time zone, plus margin).
func WithFrequencyTTL(d time.Duration) Option { return func(r *Registry) { r.freqTTL = d } }

// WithClock sets the clock that stamps updated_at when an event has no "at"
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(r *Registry) { r.now = now } }

// Open returns a Registry with its own client to the Redis at addr: what a
// DoFn's Setup calls, one client per worker. Close releases it. Every
// pipeline connects through here, so connection options have one place to
// live: addr is a plain host:port or a URL naming TLS, a user, where the
// password is, or a cluster's seed nodes (see [Addr]). The password is read
// now. An invalid addr or an unreadable password file does not panic: every
// command of the Registry fails with the reason ([Dial] returns it).
func Open(addr string, opts ...Option) *Registry {
	c, err := client(addr)
	if err != nil {
		c = failingClient(err)
	}
	c.AddHook(&stallHook{addr: addr, maxBackoff: 2 * time.Second}) // stall.go: ride out outages
	r := New(c, opts...)
	r.owned = true
	return r
}

// Dial is Open that reports an invalid address or secret, and checks the
// connection and the credentials with a PING.
func Dial(ctx context.Context, addr string, opts ...Option) (*Registry, error) {
	c, err := client(addr)
	if err != nil {
		return nil, err
	}
	r := New(c, opts...)
	r.owned = true
	if err := c.Ping(ctx).Err(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func client(addr string) (redis.UniversalClient, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	return a.Client()
}

// Close closes the client of a Registry made by Open. A Registry made by New
// leaves its client to the caller, and Close does nothing.
func (r *Registry) Close() error {
	if r == nil || !r.owned {
		return nil
	}
	return r.c.Close()
}

// New returns a Registry on c, which may be a *redis.Client, a
// *redis.ClusterClient or a *redis.Ring... any redis.UniversalClient. It
// panics on an invalid option.
func New(c redis.UniversalClient, opts ...Option) *Registry {
	r := &Registry{
		c:        c,
		k:        keys{prefix: DefaultKeyPrefix},
		dedupTTL: DefaultDedupTTL,
		freqTTL:  DefaultFrequencyTTL,
		now:      time.Now,
	}
	for _, o := range opts {
		o(r)
	}
	switch {
	case c == nil:
		panic("redisio.New: nil client")
	case strings.ContainsAny(r.k.prefix, "{}"):
		panic(fmt.Sprintf("redisio.New: key prefix %q contains '{' or '}'", r.k.prefix))
	case r.dedupTTL <= 0:
		panic(fmt.Sprintf("redisio.New: dedup TTL %v is not positive", r.dedupTTL))
	case r.freqTTL <= 0:
		panic(fmt.Sprintf("redisio.New: frequency TTL %v is not positive", r.freqTTL))
	case r.now == nil:
		panic("redisio.New: nil clock")
	}
	return r
}

// Device is one registered device of a user.
type Device struct {
	ID       string
	UserID   string
	Token    string
	Platform string
	// Topic overrides the APNs topic (the app id) when set. DeviceEvent v1
	// carries no topic, so Apply leaves it empty.
	Topic     string
	UpdatedAt time.Time
}

// deviceJSON is a device as stored in its user's hash.
type deviceJSON struct {
	Token     string `json:"token"`
	Platform  string `json:"platform"`
	Topic     string `json:"topic,omitempty"`
	UpdatedAt string `json:"updated_at"`
}

// Apply writes device events to the registry, in order.
//
// register upserts the device for the user (taking it from its previous
// user, if any), stores token and platform, replaces the user's tags when
// Tags is non-nil (an empty non-nil slice clears them; nil keeps them), and
// sets each alias type to the given value (an empty value removes that
// alias); the device leaves the alias set of a value it no longer holds.
// unregister removes the device from the user, and, unless another user owns
// the device by now, its record and alias entries. settings replaces the
// user's settings.
//
// All events go out in one pipelined round trip; a second one follows only
// when something must leave an index (a device moved, an alias or a tag was
// replaced, a user lost its last device). Each event's update of its user's
// keys is one atomic script, and so is its update of the device record.
// Apply is idempotent: applying a batch again leaves the same state.
func (r *Registry) Apply(ctx context.Context, events []pushflow.DeviceEvent) error {
	for i, e := range events {
		if err := checkEvent(e); err != nil {
			return fmt.Errorf("redisio: apply event %d: %w", i, err)
		}
	}
	if len(events) == 0 {
		return nil
	}

	type replies struct {
		dev, user *redis.Cmd
		hlen      *redis.IntCmd
	}
	reps := make([]replies, len(events))
	pipe := r.c.Pipeline()
	for i, e := range events {
		switch e.Op {
		case pushflow.OpRegister:
			at := e.At
			if at.IsZero() {
				at = r.now()
			}
			updated := at.UTC().Format(timeLayout)
			js, err := json.Marshal(deviceJSON{Token: e.Token, Platform: e.Platform, UpdatedAt: updated})
			if err != nil {
				return fmt.Errorf("redisio: apply event %d: %w", i, err)
			}
			types := sortedKeys(e.Alias)
			devArgs := make([]any, 0, 5+2*len(types))
			devArgs = append(devArgs, e.UserID, e.Token, e.Platform, "", updated)
			for _, t := range types {
				devArgs = append(devArgs, t, e.Alias[t])
			}
			reps[i].dev = pipe.Eval(ctx, scriptDeviceRegister, []string{r.k.device(e.App, e.DeviceID)}, devArgs...)

			if e.Tags == nil {
				pipe.HSet(ctx, r.k.userDevices(e.App, e.UserID), e.DeviceID, js)
			} else {
				userArgs := make([]any, 0, 2+len(e.Tags))
				userArgs = append(userArgs, e.DeviceID, string(js))
				for _, t := range e.Tags {
					userArgs = append(userArgs, t)
				}
				reps[i].user = pipe.Eval(ctx, scriptUserRegister,
					[]string{r.k.userDevices(e.App, e.UserID), r.k.userTags(e.App, e.UserID)}, userArgs...)
			}

			pipe.SAdd(ctx, r.k.users(e.App), e.UserID)
			for _, t := range e.Tags {
				pipe.SAdd(ctx, r.k.tag(e.App, t), e.UserID)
			}
			for _, t := range types {
				if v := e.Alias[t]; v != "" {
					pipe.SAdd(ctx, r.k.alias(e.App, t, v), e.DeviceID)
				}
			}
		case pushflow.OpUnregister:
			reps[i].dev = pipe.Eval(ctx, scriptDeviceUnregister, []string{r.k.device(e.App, e.DeviceID)}, e.UserID)
			pipe.HDel(ctx, r.k.userDevices(e.App, e.UserID), e.DeviceID)
			reps[i].hlen = pipe.HLen(ctx, r.k.userDevices(e.App, e.UserID))
		case pushflow.OpSettings:
			key := r.k.userSettings(e.App, e.UserID)
			if isZeroSettings(e.Settings) {
				pipe.Del(ctx, key)
				break
			}
			js, err := json.Marshal(e.Settings)
			if err != nil {
				return fmt.Errorf("redisio: apply event %d: %w", i, err)
			}
			pipe.Set(ctx, key, js, 0)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisio: apply %d events: %w", len(events), err)
	}

	// Work out, from what the scripts replaced, which index entries are
	// stale once the whole batch is applied. Only entries that differ from
	// the batch's final state are removed, so a value replaced and then
	// restored within one batch stays.
	var c cleanup
	for i, e := range events {
		d := ref{e.App, e.DeviceID}
		u := ref{e.App, e.UserID}
		switch e.Op {
		case pushflow.OpRegister:
			out, err := reps[i].dev.StringSlice()
			if err != nil || len(out) < 3 {
				return fmt.Errorf("redisio: apply event %d: device reply %v: %w", i, out, errReply(err))
			}
			if old := out[0]; old != "" && old != e.UserID {
				c.owners = append(c.owners, staleOwner{dev: d, user: old, token: out[1], updated: out[2]})
			}
			c.setOwner(d, e.UserID)
			for t, v := range e.Alias {
				c.setAlias(d, t, v)
			}
			for j := 3; j+1 < len(out); j += 2 {
				c.aliases = append(c.aliases, staleAlias{dev: d, typ: out[j], value: out[j+1]})
			}
			if e.Tags != nil {
				removed, err := reps[i].user.StringSlice()
				if err != nil {
					return fmt.Errorf("redisio: apply event %d: user reply: %w", i, err)
				}
				c.setTags(u, e.Tags, removed)
			}
			c.setLastOp(u, false, 0)
		case pushflow.OpUnregister:
			out, err := reps[i].dev.StringSlice()
			if err != nil || len(out) < 1 {
				return fmt.Errorf("redisio: apply event %d: device reply %v: %w", i, out, errReply(err))
			}
			if out[0] == "1" {
				c.clearDevice(d)
				for j := 1; j+1 < len(out); j += 2 {
					c.aliases = append(c.aliases, staleAlias{dev: d, typ: out[j], value: out[j+1]})
				}
			}
			c.setLastOp(u, true, reps[i].hlen.Val())
		}
	}
	return r.applyCleanup(ctx, &c)
}

func errReply(err error) error {
	if err != nil {
		return err
	}
	return errors.New("short reply")
}

// checkEvent reports why e cannot be applied, or nil.
func checkEvent(e pushflow.DeviceEvent) error {
	if e.App == "" || e.UserID == "" {
		return fmt.Errorf("%s without app or user_id: %w", e.Op, ErrInvalidEvent)
	}
	switch e.Op {
	case pushflow.OpRegister:
		if e.DeviceID == "" || e.Token == "" {
			return fmt.Errorf("register %s/%s without device_id or token: %w", e.App, e.UserID, ErrInvalidEvent)
		}
		for t := range e.Alias {
			if t == "" {
				return fmt.Errorf("register %s/%s: empty alias type: %w", e.App, e.UserID, ErrInvalidEvent)
			}
		}
	case pushflow.OpUnregister:
		if e.DeviceID == "" {
			return fmt.Errorf("unregister %s/%s without device_id: %w", e.App, e.UserID, ErrInvalidEvent)
		}
	case pushflow.OpSettings:
	default:
		return fmt.Errorf("unknown op %q: %w", e.Op, ErrInvalidEvent)
	}
	return nil
}

func isZeroSettings(s pushflow.Settings) bool {
	return s.Timezone == "" && s.QuietHours == "" && len(s.OptOut) == 0
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// ref names a user or a device of an app.
type ref struct{ app, id string }

type staleOwner struct {
	dev            ref
	user           string // the previous owner
	token, updated string // its entry as the move found it
}

type staleAlias struct {
	dev        ref
	typ, value string
}

type lastOp struct {
	unregister bool
	left       int64 // devices left after an unregister
}

// cleanup collects, over one batch, the index entries the batch may have
// made stale and the batch's final state to check them against.
type cleanup struct {
	owners  []staleOwner
	aliases []staleAlias
	owner   map[ref]string            // final owner of each device touched, "" if none
	alias   map[ref]map[string]string // final alias values of each device touched
	tags    map[ref]map[string]bool   // final tags of each user whose tags were replaced
	lost    map[ref]map[string]bool   // tags those users lost along the way
	last    map[ref]lastOp
}

func (c *cleanup) setOwner(d ref, user string) {
	if c.owner == nil {
		c.owner = map[ref]string{}
	}
	c.owner[d] = user
}

func (c *cleanup) setAlias(d ref, typ, value string) {
	if c.alias == nil {
		c.alias = map[ref]map[string]string{}
	}
	if c.alias[d] == nil {
		c.alias[d] = map[string]string{}
	}
	c.alias[d][typ] = value
}

func (c *cleanup) clearDevice(d ref) {
	c.setOwner(d, "")
	if c.alias == nil {
		c.alias = map[ref]map[string]string{}
	}
	c.alias[d] = map[string]string{}
}

func (c *cleanup) setTags(u ref, tags, removed []string) {
	if c.tags == nil {
		c.tags = map[ref]map[string]bool{}
		c.lost = map[ref]map[string]bool{}
	}
	final := make(map[string]bool, len(tags))
	for _, t := range tags {
		final[t] = true
	}
	c.tags[u] = final
	if c.lost[u] == nil {
		c.lost[u] = map[string]bool{}
	}
	for _, t := range removed {
		c.lost[u][t] = true
	}
}

func (c *cleanup) setLastOp(u ref, unregister bool, left int64) {
	if c.last == nil {
		c.last = map[ref]lastOp{}
	}
	c.last[u] = lastOp{unregister: unregister, left: left}
}

// applyCleanup removes the stale index entries in one pipelined round trip,
// or none when there are none.
func (r *Registry) applyCleanup(ctx context.Context, c *cleanup) error {
	pipe := r.c.Pipeline()
	n := 0
	seenOwner := map[staleOwner]bool{}
	for _, s := range c.owners {
		if c.owner[s.dev] == s.user || seenOwner[s] {
			continue
		}
		seenOwner[s] = true
		// Compare and delete: if the previous owner registered the device
		// again meanwhile (a newer entry), it keeps it.
		pipe.Eval(ctx, scriptUserDeviceDelete, []string{r.k.userDevices(s.dev.app, s.user)}, s.dev.id, s.token, s.updated)
		n++
	}
	seenAlias := map[staleAlias]bool{}
	for _, s := range c.aliases {
		if c.alias[s.dev][s.typ] == s.value || seenAlias[s] {
			continue
		}
		seenAlias[s] = true
		pipe.SRem(ctx, r.k.alias(s.dev.app, s.typ, s.value), s.dev.id)
		n++
	}
	for u, lost := range c.lost {
		for t := range lost {
			if !c.tags[u][t] {
				pipe.SRem(ctx, r.k.tag(u.app, t), u.id)
				n++
			}
		}
	}
	for u, op := range c.last {
		if op.unregister && op.left == 0 {
			pipe.SRem(ctx, r.k.users(u.app), u.id)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisio: apply: remove %d stale index entries: %w", n, err)
	}
	return nil
}

// RemoveToken removes a device whose provider token was rejected as
// permanently invalid (APNs 410 Unregistered, FCM UNREGISTERED), but only if
// its stored token is still token: a re-register with a new token between
// the send and the cleanup wins. It reports whether it removed anything.
//
// The device leaves its user and loses its token; its alias values stay on
// the device record (so a later register still replaces them correctly)
// until an unregister. The user stays in the app's user set even if this
// was its last device.
func (r *Registry) RemoveToken(ctx context.Context, app, deviceID, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	owner, err := r.c.Eval(ctx, scriptDeviceDropToken, []string{r.k.device(app, deviceID)}, token).Text()
	if err != nil {
		return false, fmt.Errorf("redisio: remove token of %s/%s: %w", app, deviceID, err)
	}
	if owner == "" {
		return false, nil
	}
	if _, err := r.c.Eval(ctx, scriptUserDeviceDelete, []string{r.k.userDevices(app, owner)}, deviceID, token, "").Int(); err != nil {
		return true, fmt.Errorf("redisio: remove token of %s/%s from user %s: %w", app, deviceID, owner, err)
	}
	return true, nil
}
