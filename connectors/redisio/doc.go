// Package redisio is the Redis device registry and the filter's state, on
// go-redis v9. A Registry works on any redis.UniversalClient: a single
// server, Sentinel, or Redis Cluster (tested on all three kinds of server:
// redis-server, a three-node cluster, and miniredis, which the embedded dev
// stack uses).
//
// [Open] takes an address string, host:port or a URL that names TLS, an ACL
// user, where the password is (a file or an environment variable, read on
// the worker) and a cluster's seed nodes: see [Addr].
//
// # Key layout
//
// Keys start with a prefix ("pf:" by default, WithKeyPrefix). Identifiers
// are embedded verbatim except for the characters % : { }, which are
// percent-escaped, so ':' only ever separates parts and the only braces are
// the cluster hash tags below. LAYOUT.md gives the reason for each key.
//
//	pf:u:{app:user}:devices            hash   device id → {"token","platform","topic"?,"updated_at"}
//	pf:u:{app:user}:tags               set    the user's tags
//	pf:u:{app:user}:settings           string pushflow.Settings as JSON
//	pf:u:{app:user}:interest           hash   category → score
//	pf:u:{app:user}:freq:<day>:<cat>   string counter, TTL 48h from the first INCR
//	pf:d:{app:device}                  hash   user, token, platform, topic, updated_at, alias:<type> → value
//	pf:alias:<app>:<type>:<value>      set    device ids holding that alias value
//	pf:tag:<app>:<tag>                 set    users holding that tag
//	pf:users:<app>                     set    users that registered a device (broadcast audience)
//	pf:dedup:<key>                     string claim marker, TTL 24h
//
// All keys of one user share the hash tag {app:user}, hence one cluster
// slot, so a script may update them atomically; all keys of one device
// share {app:device}. Index sets (alias, tag, users) are single keys, each
// in its own slot.
//
// # Round trips
//
// Every lookup takes a slice and sends one pipeline: one round trip for the
// whole slice (on a cluster, one per node, concurrently), never one per
// element. Large audiences are read with SSCAN cursors (ScanTag, ScanUsers),
// a page at a time. Apply sends a batch of events in one round trip, plus a
// second one only when index entries must be removed.
//
// # Consistency
//
// Each register is one Lua script on the device's slot (write the device
// record, report the previous owner and the alias values it replaced) and
// one on the user's slot (store the device, replace the tags, report the
// tags dropped) — or a plain HSET without tags. Scripts touch only the keys
// they declare, all in one slot, so they run on a cluster. The index sets
// live in other slots, so they are brought in line after the scripts:
// additions in the same pipeline, removals (the previous owner's entry, an
// alias value or a tag the batch replaced) in a follow-up pipeline computed
// from the scripts' replies and the batch's final state, so a value
// replaced and restored within one batch stays. Taking a device from its
// previous owner is a compare-and-delete on the exact entry the move
// displaced: if that user registered the device again meanwhile, it keeps
// it.
//
// Readers may briefly see an index ahead of a record (a device in its new
// alias set before it left the old one); they never see half of a script.
// Writers of one user's keys are expected to be serialized, as the registry
// pipeline does by keying device events by app/user_id. Two writers moving
// the same device between users at the same moment can leave an alias-set
// entry stale, and a failure between the two round trips of Apply leaves
// stale index entries that a retry of the batch does not see.
//
// A user stays in the app's user set until its own unregister removes its
// last device; a user emptied by a device moving away or by RemoveToken
// stays listed (its broadcast recipients then resolve to no device).
package redisio
