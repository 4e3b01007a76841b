package expand

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExpandFileConfined checks that a file target is read only under
// AudienceRoots, and that a refused one is dead-lettered with the reason,
// yields one file_refused event and no recipient.
func TestExpandFileConfined(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	base := t.TempDir()
	root := filepath.Join(base, "aud")
	writeFile(t, filepath.Join(root, "a.txt"), "u1\nu2\n")
	writeFile(t, filepath.Join(root, "sub", "b.txt"), "u3\n")
	writeFile(t, filepath.Join(base, "aud-evil", "x.txt"), "evil1\n")
	writeFile(t, filepath.Join(base, "outside.txt"), "evil2\n")
	links := map[string]string{
		"passwd":   "/etc/passwd",                         // absolute, outside
		"out":      "../outside.txt",                      // relative, climbs out
		"absin":    filepath.Join(root, "a.txt"),          // absolute, even though inside
		"subdir":   "sub",                                 // relative, inside: followed
		"loopback": "../aud/a.txt",                        // climbs out and back in: refused
		"fifo":     filepath.Join(base, "outside.fifo"),   // would block if ever opened
		"evildir":  filepath.Join(base, "aud-evil") + "/", // a directory outside
	}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(base, "outside.fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "inside.fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	roots := []string{root}

	for _, tt := range []struct {
		name      string
		roots     []string
		file      string
		wantUsers []string
		refused   string // the dead letter's reason
		fileError string // the file_error reason
	}{
		{name: "inside", file: filepath.Join(root, "a.txt"), wantUsers: []string{"u1", "u2"}},
		{name: "file URI", file: "file://" + filepath.Join(root, "sub", "b.txt"), wantUsers: []string{"u3"}},
		{name: "root with a trailing slash", roots: []string{root + "/"}, file: filepath.Join(root, "a.txt"), wantUsers: []string{"u1", "u2"}},
		{name: "dot-dot that stays inside", file: filepath.Join(root, "sub", "..", "a.txt"), wantUsers: []string{"u1", "u2"}},
		{name: "relative link inside", file: filepath.Join(root, "subdir", "b.txt"), wantUsers: []string{"u3"}},
		{name: "second root", roots: []string{filepath.Join(base, "none"), root}, file: filepath.Join(root, "a.txt"), wantUsers: []string{"u1", "u2"}},
		{name: "etc passwd", file: "/etc/passwd",
			refused: fmt.Sprintf(`target.file: "/etc/passwd" is outside --audience_roots [%s]`, root)},
		{name: "dot-dot out", file: root + "/../outside.txt",
			refused: fmt.Sprintf(`target.file: %q is outside --audience_roots [%s]`, root+"/../outside.txt", root)},
		{name: "string prefix is not a path prefix", file: filepath.Join(base, "aud-evil", "x.txt"),
			refused: fmt.Sprintf(`target.file: %q is outside --audience_roots [%s]`, filepath.Join(base, "aud-evil", "x.txt"), root)},
		{name: "no roots", roots: []string{}, file: filepath.Join(root, "a.txt"),
			refused: fmt.Sprintf(`target.file: %q is refused: file targets need --audience_roots, which is empty`, filepath.Join(root, "a.txt"))},
		{name: "fifo outside", file: filepath.Join(base, "outside.fifo"),
			refused: fmt.Sprintf(`target.file: %q is outside --audience_roots [%s]`, filepath.Join(base, "outside.fifo"), root)},
		{name: "fifo inside", file: filepath.Join(root, "inside.fifo"),
			fileError: "file_error: " + filepath.Join(root, "inside.fifo") + " is not a regular file"},
		{name: "the root itself", file: root, fileError: "file_error: " + root + " is not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fn := newFn(t, addr, 10, 10)
			fn.AudienceRoots = roots
			if tt.roots != nil {
				fn.AudienceRoots = tt.roots
			}
			req := request("r-conf", pushflow.Target{File: tt.file})
			got := run(t, fn, req)
			var want out
			switch {
			case tt.refused != "":
				raw, _ := json.Marshal(req.Req)
				want.Events = []pushflow.DeliveryEvent{dropped(req, "", "", ReasonFileRefused)}
				want.Dead = []pushflow.DeadLetter{{V: 1, Stage: pushflow.StageValidate, Reason: tt.refused, Raw: string(raw),
					Topic: pushflow.TopicRequests, Partition: 1, Offset: 17, RequestID: "r-conf"}}
			case tt.fileError != "":
				want.Events = []pushflow.DeliveryEvent{dropped(req, "", "", tt.fileError)}
			default:
				want.Batches = []recipient.Batch{{Request: req, Recipients: users(tt.wantUsers...)}}
			}
			if diff := cmp.Diff(want, got, opts, cmpopts.IgnoreFields(pushflow.DeadLetter{}, "At")); diff != "" {
				t.Errorf("expand(file %s, roots %v) mismatch (-want +got):\n%s", tt.file, fn.AudienceRoots, diff)
			}
		})
	}
	// Symbolic links that are absolute or climb out of the root are refused
	// by os.Root without opening their target (the fifo would block).
	for _, name := range []string{"passwd", "out", "absin", "loopback", "fifo", "evildir"} {
		t.Run("link "+name, func(t *testing.T) {
			fn := newFn(t, addr, 10, 10)
			fn.AudienceRoots = roots
			file := filepath.Join(root, name)
			if name == "evildir" {
				file = filepath.Join(root, name, "x.txt")
			}
			got := run(t, fn, request("r-link", pushflow.Target{File: file}))
			wantReason := fmt.Sprintf(`target.file: %q leads outside --audience_roots [%s] (a symbolic link that is absolute or climbs out of its root)`, file, root)
			if len(got.Batches) != 0 || len(got.Dead) != 1 || got.Dead[0].Reason != wantReason ||
				len(got.Events) != 1 || got.Events[0].Reason != ReasonFileRefused {
				t.Errorf("expand(file %s) = %d batches, dead %+v, events %+v; want no batch, one dead letter %q and one %s event",
					file, len(got.Batches), got.Dead, got.Events, wantReason, ReasonFileRefused)
			}
		})
	}
}

// TestExpandFileRelativeRoot checks a relative root and a relative target
// both resolve against the working directory, as on a worker (the dev
// stack's "testdata").
func TestExpandFileRelativeRoot(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "testdata", "audience.txt"), "u7\n")
	t.Chdir(dir)
	fn := newFn(t, addr, 10, 10)
	fn.AudienceRoots = []string{"testdata"}
	req := request("r-rel", pushflow.Target{File: "testdata/audience.txt"})
	want := out{Batches: []recipient.Batch{{Request: req, Recipients: users("u7")}}}
	if diff := cmp.Diff(want, run(t, fn, req), opts); diff != "" {
		t.Errorf("expand(relative file) mismatch (-want +got):\n%s", diff)
	}
	req = request("r-rel-out", pushflow.Target{File: "testdata/../x.txt"})
	if got := run(t, fn, req); len(got.Dead) != 1 || got.Dead[0].Reason != `target.file: "testdata/../x.txt" is outside --audience_roots [testdata]` {
		t.Errorf("expand(testdata/../x.txt) dead = %+v, want one refusal", got.Dead)
	}
}

// TestExpandFileInvalidLines checks that lines which are not user ids are
// skipped, never echoed, and reported by one event per request, whatever
// the number of slices.
func TestExpandFileInvalidLines(t *testing.T) {
	addr, _ := startRegistry(t, registerEvent("u1", "d1", 1, nil, nil))
	dir := t.TempDir()
	passwd := "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
	long := strings.Repeat("y", 70<<10) // longer than the reader's buffer
	mixed := filepath.Join(dir, "mixed.txt")
	writeFile(t, mixed, "# header\nu1\nroot:x:0:0\n\nu 2\n  u3  \nu\xff\n"+long+"\nu4\n/etc/shadow\nu5")
	onlyBad := filepath.Join(dir, "passwd.txt")
	writeFile(t, onlyBad, passwd)

	for _, tt := range []struct {
		name      string
		file      string
		scanCount int64
		sliceMax  int
		wantUsers []string
	}{
		{name: "mixed, one slice", file: mixed, scanCount: 100, sliceMax: 1000, wantUsers: []string{"u1", "u3", "u4", "u5"}},
		{name: "mixed, a line per page and slice", file: mixed, scanCount: 1, sliceMax: 1, wantUsers: []string{"u1", "u3", "u4", "u5"}},
		{name: "a passwd file", file: onlyBad, scanCount: 100, sliceMax: 1000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fn := newFn(t, addr, 100, tt.scanCount)
			fn.SliceMax = tt.sliceMax
			fn.AudienceRoots = []string{dir}
			req := request("r-lines", pushflow.Target{File: tt.file})
			got := run(t, fn, req)
			var gotUsers []string
			for _, b := range got.Batches {
				for _, r := range b.Recipients {
					gotUsers = append(gotUsers, r.UserID)
				}
			}
			if diff := cmp.Diff(tt.wantUsers, gotUsers, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("recipients (-want +got):\n%s", diff)
			}
			want := []pushflow.DeliveryEvent{dropped(req, "", "", ReasonInvalidAudienceLine)}
			if diff := cmp.Diff(want, got.Events, opts); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if len(got.Dead) != 0 {
				t.Errorf("dead letters %+v, want none", got.Dead)
			}
		})
	}
}

// TestReadFileCountsInvalidLines checks the Cursor's account of skipped
// lines: how many, which came first and why, never the line itself.
func TestReadFileCountsInvalidLines(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	content := "u1\n\n# c\nroot:x:0:0\nu2\nu 3\n"
	writeFile(t, file, content)
	var c Cursor
	b := &batcher{size: 10, emit: func(recipient.Batch) {}}
	if err := readFile([]string{dir}, file, &c, 100, b, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	want := Cursor{Pos: uint64(len(content)), Line: 6, Invalid: 2, FirstInvalid: 4, InvalidProblem: "has ':' at byte 4 (not allowed in a user id)", Done: true}
	if c != want {
		t.Errorf("readFile cursor = %+v, want %+v", c, want)
	}
	if b.total != 2 {
		t.Errorf("readFile added %d recipients, want 2", b.total)
	}
}
