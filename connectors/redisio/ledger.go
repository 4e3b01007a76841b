package redisio

import (
	"context"
	"fmt"
	"strconv"

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
//	ledger:{<name>}:progress  hash "u:<key>" → open units, "x:<key>" → 1 once the
//	                          entry will start no more units (its expansion ended)
//
// An entry is settled (both removed) when its "x" flag is set and its units
// reach 0 or below; units may go negative for a while because outputs can be
// written before the stage that created them has counted them.

func (k keys) ledgerEntries(name string) string {
	return k.prefix + "ledger:{" + esc(name) + "}:entries"
}

func (k keys) ledgerProgress(name string) string {
	return k.prefix + "ledger:{" + esc(name) + "}:progress"
}

// scriptLedgerAdmit adds entries that are not in the ledger yet.
//
//	KEYS[1] entries, KEYS[2] progress
//	ARGV    (key, entry, units, final) per entry
//	returns 1 per entry admitted, 0 per entry already there
const scriptLedgerAdmit = `
local out = {}
for i = 1, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i+1]) == 1 then
    redis.call('HSET', KEYS[2], 'u:' .. ARGV[i], ARGV[i+2])
    if ARGV[i+3] == '1' then redis.call('HSET', KEYS[2], 'x:' .. ARGV[i], '1') else redis.call('HDEL', KEYS[2], 'x:' .. ARGV[i]) end
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
end
return out
`

// scriptLedgerProgress adds deltas to open entries' units, marks entries
// final, and settles those that are done. Unknown keys are ignored (an
// entry already settled, or outputs of work that is not in the ledger).
//
//	KEYS[1] entries, KEYS[2] progress
//	ARGV    (key, delta, final) per change
//	returns 1 per change that settled its entry, else 0
const scriptLedgerProgress = `
local out = {}
for i = 1, #ARGV, 3 do
  local k = ARGV[i]
  local settled = 0
  if redis.call('HEXISTS', KEYS[1], k) == 1 then
    local u = redis.call('HINCRBY', KEYS[2], 'u:' .. k, tonumber(ARGV[i+1]))
    if ARGV[i+2] == '1' then redis.call('HSET', KEYS[2], 'x:' .. k, '1') end
    if u <= 0 and redis.call('HEXISTS', KEYS[2], 'x:' .. k) == 1 then
      redis.call('HDEL', KEYS[1], k)
      redis.call('HDEL', KEYS[2], 'u:' .. k, 'x:' .. k)
      settled = 1
    end
  end
  out[#out+1] = settled
end
return out
`

// LedgerEntry is one entry to admit: Units of work it starts with, and
// Final when it will start no others (an entry whose outcomes are already
// known, e.g. a dead letter).
type LedgerEntry struct {
	Key   string
	Value []byte
	Units int64
	Final bool
}

// LedgerChange is a change to an open entry's progress: Delta units (new
// units positive, written outputs negative), and Final once the entry will
// start no more units.
type LedgerChange struct {
	Key   string
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
	args := make([]any, 0, 4*len(entries))
	for _, e := range entries {
		args = append(args, e.Key, e.Value, e.Units, flag(e.Final))
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
// returns the keys of the entries it settled.
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

// LedgerReset restarts the progress of open entries that a new run replays:
// units and the final flag as given, as if just admitted. Keys not in the
// ledger are skipped.
func (r *Registry) LedgerReset(ctx context.Context, name string, entries []LedgerEntry) error {
	if len(entries) == 0 {
		return nil
	}
	pipe := r.c.Pipeline()
	prog := r.k.ledgerProgress(name)
	for _, e := range entries {
		pipe.HSet(ctx, prog, "u:"+e.Key, strconv.FormatInt(e.Units, 10))
		if e.Final {
			pipe.HSet(ctx, prog, "x:"+e.Key, "1")
		} else {
			pipe.HDel(ctx, prog, "x:"+e.Key)
		}
		if len(e.Value) > 0 {
			pipe.HSet(ctx, r.k.ledgerEntries(name), e.Key, e.Value)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisio: reset %d ledger %s entries: %w", len(entries), name, err)
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

// LedgerGet returns the value of the open entry key of the ledger name, nil
// if it is not open.
func (r *Registry) LedgerGet(ctx context.Context, name, key string) ([]byte, error) {
	v, err := r.c.HGet(ctx, r.k.ledgerEntries(name), key).Bytes()
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redisio: ledger %s entry %s: %w", name, key, err)
	}
	return v, nil
}
