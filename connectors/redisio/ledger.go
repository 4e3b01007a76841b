package redisio

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The request ledger: a durable record of the work a dispatch pipeline has
// taken from Kafka and not finished yet. Kafka offsets are committed once a
// record's bundle is done, which on Prism (no durable runner state) is long
// before its recipients are sent; the ledger is what makes that safe. Each
// entry is admitted before its offset can be committed and stays until every
// unit of work it started (a recipient in flight, or an outcome not written
// yet) has been written to the outputs. A restarted pipeline replays the
// entries that are still open.
//
// Keys (one hash slot per ledger, so every script is atomic on a cluster):
//
//	ledger:{<name>}:entries   hash entry key → entry (opaque bytes, the caller's encoding)
//	ledger:{<name>}:progress  hash, per pool: "u:<pool>" open units, "x:<pool>" entries of
//	                          the pool still starting units, "e:<pool>" its entry keys
//
// Entries count their units in a pool, which is how their outputs name
// them: two copies of one request (read from two Kafka records) are two
// entries in the pool of the request id. A pool is settled (its entries and
// progress removed) when no entry of it starts units any more and its units
// reach 0 or below; units may go negative for a while because outputs can
// be written before the stage that created them has counted them.

func (k keys) ledgerEntries(name string) string {
	return k.prefix + "ledger:{" + esc(name) + "}:entries"
}

func (k keys) ledgerProgress(name string) string {
	return k.prefix + "ledger:{" + esc(name) + "}:progress"
}

// scriptLedgerAdmit adds entries that are not in the ledger yet.
//
//	KEYS[1] entries, KEYS[2] progress
//	ARGV    (key, pool, entry, units, final) per entry
//	returns 1 per entry admitted, 0 per entry already there
const scriptLedgerAdmit = `
local out = {}
for i = 1, #ARGV, 5 do
  local k, pool = ARGV[i], ARGV[i+1]
  if redis.call('HSETNX', KEYS[1], k, ARGV[i+2]) == 1 then
    redis.call('HINCRBY', KEYS[2], 'u:' .. pool, tonumber(ARGV[i+3]))
    if ARGV[i+4] ~= '1' then redis.call('HINCRBY', KEYS[2], 'x:' .. pool, 1) end
    local l = redis.call('HGET', KEYS[2], 'e:' .. pool)
    if l then redis.call('HSET', KEYS[2], 'e:' .. pool, l .. '\n' .. k) else redis.call('HSET', KEYS[2], 'e:' .. pool, k) end
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
end
return out
`

// scriptLedgerProgress adds deltas to open pools' units, counts entries
// whose expansion ended, and settles the pools that are done. Unknown
// pools are ignored (settled already, or outputs of work not in the
// ledger).
//
//	KEYS[1] entries, KEYS[2] progress
//	ARGV    (pool, delta, final) per change
//	returns 1 per change that settled its pool, else 0
const scriptLedgerProgress = `
local out = {}
for i = 1, #ARGV, 3 do
  local pool = ARGV[i]
  local settled = 0
  local l = redis.call('HGET', KEYS[2], 'e:' .. pool)
  if l then
    local u = redis.call('HINCRBY', KEYS[2], 'u:' .. pool, tonumber(ARGV[i+1]))
    local x = tonumber(redis.call('HGET', KEYS[2], 'x:' .. pool) or '0')
    if ARGV[i+2] == '1' then x = redis.call('HINCRBY', KEYS[2], 'x:' .. pool, -1) end
    if u <= 0 and x <= 0 then
      for k in string.gmatch(l, '[^\n]+') do redis.call('HDEL', KEYS[1], k) end
      redis.call('HDEL', KEYS[2], 'u:' .. pool, 'x:' .. pool, 'e:' .. pool)
      settled = 1
    end
  end
  out[#out+1] = settled
end
return out
`

// LedgerEntry is one entry to admit: Units of work it starts with in its
// Pool ("" = its own Key), and Final when it will start no others (an
// entry whose outcomes are already known, e.g. a dead letter).
type LedgerEntry struct {
	Key   string
	Pool  string
	Value []byte
	Units int64
	Final bool
}

func (e LedgerEntry) pool() string {
	if e.Pool == "" {
		return e.Key
	}
	return e.Pool
}

// LedgerChange is a change to an open pool's progress: Delta units (new
// units positive, written outputs negative), and Final once one of its
// entries will start no more units.
type LedgerChange struct {
	Key   string // the pool
	Delta int64
	Final bool
}

// LedgerAdmit adds entries to the ledger name in one round trip and reports,
// per entry, whether it was admitted (false: an entry with that key is
// already open, admitted earlier or by a previous run).
func (r *Registry) LedgerAdmit(ctx context.Context, name string, entries []LedgerEntry) ([]bool, error) {
	out := make([]bool, len(entries))
	if len(entries) == 0 {
		return out, nil
	}
	args := make([]any, 0, 5*len(entries))
	for _, e := range entries {
		args = append(args, e.Key, e.pool(), e.Value, e.Units, flag(e.Final))
	}
	res, err := r.c.Eval(ctx, scriptLedgerAdmit, []string{r.k.ledgerEntries(name), r.k.ledgerProgress(name)}, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("redisio: admit %d entries to ledger %s: %w", len(entries), name, err)
	}
	for i := range out {
		out[i] = i < len(res) && res[i] == 1
	}
	return out, nil
}

// LedgerProgress applies changes to the ledger name in one round trip and
// returns the pools it settled.
func (r *Registry) LedgerProgress(ctx context.Context, name string, changes []LedgerChange) ([]string, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 3*len(changes))
	for _, c := range changes {
		args = append(args, c.Key, c.Delta, flag(c.Final))
	}
	res, err := r.c.Eval(ctx, scriptLedgerProgress, []string{r.k.ledgerEntries(name), r.k.ledgerProgress(name)}, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("redisio: progress of %d ledger %s entries: %w", len(changes), name, err)
	}
	var settled []string
	for i, v := range res {
		if v == 1 && i < len(changes) {
			settled = append(settled, changes[i].Key)
		}
	}
	return settled, nil
}

// LedgerScan calls f with every open entry of the ledger name, a page of
// count at a time (SCAN semantics: an entry admitted during the scan may or
// may not be seen).
func (r *Registry) LedgerScan(ctx context.Context, name string, count int64, f func(key string, value []byte) error) error {
	var cursor uint64
	for {
		kvs, next, err := r.c.HScan(ctx, r.k.ledgerEntries(name), cursor, "*", count).Result()
		if err != nil {
			return fmt.Errorf("redisio: scan ledger %s: %w", name, err)
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			if err := f(kvs[i], []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// LedgerPool is the progress of one pool as a new run starts it again.
type LedgerPool struct {
	Pool      string
	Units     int64    // units its entries start with
	Expanding int64    // its entries that will still start units
	Keys      []string // its entries
}

// LedgerReset restarts the progress of open pools that a new run replays,
// as if their entries were just admitted, and stores the entries' new
// values (values[key], when given).
func (r *Registry) LedgerReset(ctx context.Context, name string, pools []LedgerPool, values map[string][]byte) error {
	if len(pools) == 0 {
		return nil
	}
	pipe := r.c.Pipeline()
	prog := r.k.ledgerProgress(name)
	for _, p := range pools {
		pipe.HSet(ctx, prog, "u:"+p.Pool, strconv.FormatInt(p.Units, 10), "x:"+p.Pool, strconv.FormatInt(p.Expanding, 10), "e:"+p.Pool, strings.Join(p.Keys, "\n"))
		for _, k := range p.Keys {
			if v, ok := values[k]; ok {
				pipe.HSet(ctx, r.k.ledgerEntries(name), k, v)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisio: reset %d ledger %s pools: %w", len(pools), name, err)
	}
	return nil
}

// LedgerOpen returns how many entries of the ledger name are open.
func (r *Registry) LedgerOpen(ctx context.Context, name string) (int64, error) {
	n, err := r.c.HLen(ctx, r.k.ledgerEntries(name)).Result()
	if err != nil && err != redis.Nil {
		return 0, fmt.Errorf("redisio: ledger %s: %w", name, err)
	}
	return n, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
