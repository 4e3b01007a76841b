package expand

import (
	"fmt"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
)

func init() {
	beam.RegisterType(reflect.TypeOf((*Cursor)(nil)).Elem())
}

// Cursor is the restriction of one request's expansion: where its next
// page starts and what earlier calls emitted. A Redis scan cursor is not an
// offset (it walks the hash table in reverse-binary order), so the
// restriction cannot be split in the middle like an offset range; it can be
// checkpointed: the call stops after a slice, and the residual Cursor resumes
// where it stopped.
type Cursor struct {
	// Pos is where the next page starts: the SSCAN cursor of a broadcast or
	// tag audience, the byte offset of a file audience. 0 is the start (a
	// scan that returns cursor 0 is Done instead).
	Pos uint64
	// Seq is the Seq of the next batch, so a request's batches are numbered
	// 0, 1, 2 … across calls (pacing shards by it).
	Seq int
	// Emitted and Drops count the recipients and the expand-stage drop
	// events of earlier calls, for the empty-audience event at the end.
	Emitted int64
	Drops   int64
	// LastAt and LastN are the emission time (unix ns) of the last batch of
	// the previous slice, and that slice's recipients: until the pacer
	// reports a batch at least that new, the slice counts as in transit.
	LastAt int64
	LastN  int64
	// Line counts the lines of a file audience read so far; Invalid the
	// ones skipped as not user ids, FirstInvalid the number (from 1) of the
	// first such line and InvalidProblem what was wrong with it (never the
	// line itself), for the request's one invalid_audience_line event.
	Line           int64
	Invalid        int64
	FirstInvalid   int64
	InvalidProblem string
	// Started is set once the app check ran (and its outcome was emitted).
	Started bool
	// Done is set when the audience is exhausted.
	Done bool
}

// cursorTracker tracks a Cursor. The DoFn claims its starting position once
// (TryClaim(Cursor.Pos)) and then moves the position forward page by page
// (advance); TrySplit(0), the runner's checkpoint, cuts the restriction at
// the current position: the primary is done, the residual resumes there.
// Splits at other fractions are refused (a scan has no midpoint).
type cursorTracker struct {
	rest    Cursor // the restriction as the runner gave it
	cur     Cursor // the current position: where a residual starts
	claimed bool
	stopped bool // checkpointed: no more claims
	err     error
}

func newTracker(c Cursor) *sdf.LockRTracker {
	return sdf.NewLockRTracker(&cursorTracker{rest: c, cur: c})
}

// TryClaim claims the work from pos, which must be the current position.
func (t *cursorTracker) TryClaim(pos any) bool {
	p, ok := pos.(uint64)
	switch {
	case t.err != nil || t.stopped || t.cur.Done:
		return false
	case !ok:
		t.err = fmt.Errorf("expand: cursorTracker.TryClaim(%T): want uint64", pos)
		return false
	case p != t.cur.Pos:
		t.err = fmt.Errorf("expand: cursorTracker.TryClaim(%d): the current position is %d", p, t.cur.Pos)
		return false
	}
	t.claimed = true
	return true
}

// advance records the progress of a claimed call.
func (t *cursorTracker) advance(c Cursor) { t.cur = c }

func (t *cursorTracker) GetError() error { return t.err }

// TrySplit supports checkpoints only (fraction 0): the primary becomes the
// part already processed, marked Done, and the residual is the current
// position. Nothing to split off returns no residual.
func (t *cursorTracker) TrySplit(fraction float64) (primary, residual any, err error) {
	if fraction != 0 || t.stopped || t.cur.Done || t.err != nil {
		return t.rest, nil, nil
	}
	t.stopped = true
	residual = t.cur
	done := t.cur
	done.Done = true
	t.rest = done
	return t.rest, residual, nil
}

// GetProgress reports recipients emitted by this call as done work; the
// rest of an audience is unknown until its scan ends, so remaining is 1
// while it runs.
func (t *cursorTracker) GetProgress() (done, remaining float64) {
	done = float64(t.cur.Emitted - t.rest.Emitted)
	if !t.IsDone() {
		remaining = 1
	}
	return done, remaining
}

func (t *cursorTracker) IsDone() bool { return t.cur.Done || t.stopped }

func (t *cursorTracker) GetRestriction() any { return t.rest }

// IsBounded: every audience is finite.
func (t *cursorTracker) IsBounded() bool { return true }

// advance moves rt's position to c under rt's lock.
func advance(rt *sdf.LockRTracker, c Cursor) {
	rt.Mu.Lock()
	defer rt.Mu.Unlock()
	rt.Rt.(*cursorTracker).advance(c)
}
