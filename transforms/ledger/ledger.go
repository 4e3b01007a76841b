// Package ledger makes dispatch crash-safe on any runner: a durable record,
// in Redis, of every request taken from Kafka whose outputs are not all
// written yet. See LEDGER.md beside this file for the model.
//
//	Kafka ─► Admit ─► requests (ledger entry written before the offset can commit)
//	         Replay ─► requests of entries a previous run left open
//	         ... lanes (expand, enrich report units) ...
//	outputs ─► Deliver: table + push.deliveries + push.deadletter, then settle
//
// An entry counts open units of work: recipients in flight and outputs not
// written. Expansion and enrichment report the units they add (a user with
// three devices is three units); Deliver subtracts the outputs it wrote. An
// entry whose expansion ended and whose units reach zero is settled
// (removed). A restarted pipeline replays every entry a previous run left
// open; the stages recognise replayed work (send's recorded outcomes) so a
// replay re-emits what was done instead of doing it again.
package ledger

import (
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow"
)

func init() {
	beam.RegisterType(reflect.TypeFor[Output]())
}

// Config names a ledger. A zero Name turns the ledger off: nothing is
// admitted or settled, and stages report nothing.
type Config struct {
	RedisAddr string
	// Name is the ledger's name, one per pipeline deployment (dispatch
	// uses "dispatch/<consumer group>").
	Name string
	// Run identifies this run of the pipeline: Replay replays only entries
	// admitted by other runs (a new id per process start).
	Run string
}

// Enabled reports whether c names a ledger.
func (c Config) Enabled() bool { return c.Name != "" }

// Output is one unit of finished work, ready to be written: the delivery
// events and dead letters of one record or recipient, and the ledger entry
// it settles.
type Output struct {
	Key    string // ledger key; "" settles nothing
	Events []pushflow.DeliveryEvent
	Dead   []pushflow.DeadLetter
}

// RequestKey is the ledger pool of a valid request: what its outputs
// settle.
func RequestKey(id string) string { return "r:" + id }

// rejectKey is the ledger key of a record dead-lettered at admission.
func rejectKey(source string) string { return "rej:" + source }

// entryKey is the ledger key of the request id read at source; its pool
// is RequestKey(id).
func entryKey(id, source string) string { return RequestKey(id) + "@" + source }

// InitialUnits is how many units a request starts with, and whether
// expansion can add none: the distinct users or devices of a list target
// (each becomes exactly one recipient or one dropped event), so a backlog
// of one-user requests costs expansion no ledger round trip. Other targets
// start at zero and expansion reports what it emits.
func InitialUnits(req pushflow.PushRequest) (units int64, final bool) {
	switch req.Target.Kind() {
	case pushflow.TargetUsers:
		return distinct(req.Target.Users), true
	case pushflow.TargetDevices:
		return distinct(req.Target.Devices), true
	}
	return 0, false
}

func distinct(ss []string) int64 {
	seen := make(map[string]struct{}, len(ss))
	for _, s := range ss {
		seen[s] = struct{}{}
	}
	return int64(len(seen))
}
