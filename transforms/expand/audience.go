package expand

// File audiences: confined to Config.AudienceRoots, one valid user id per
// line.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// Reasons of the request-level events of file audiences.
const (
	// ReasonFileRefused is the reason of a request whose file target lies
	// outside Config.AudienceRoots (or of any file target when no root is
	// configured). The request is dead-lettered as well, with the path and
	// the roots in the dead letter's reason, and nothing of the file is
	// read.
	ReasonFileRefused = "file_refused"
	// ReasonInvalidAudienceLine is the reason of the one event of a request
	// whose audience file had lines that are not user ids
	// (pushflow.ValidUserID). Those lines were skipped; the rest of the
	// audience was expanded.
	ReasonInvalidAudienceLine = "invalid_audience_line"
)

// refusedError is a file target that may not be opened: the dead letter's
// reason.
type refusedError struct {
	msg string
}

func (e *refusedError) Error() string { return e.msg }

// audienceRoot finds the root of roots that the file target path lies in,
// lexically: path and each root are made absolute and cleaned
// (filepath.Abs; a relative one against the worker's working directory),
// and path must be the root or below it (filepath.Rel gives a local path,
// so "/srv/aud-x" is not under "/srv/aud", and ".." cannot climb out). It
// touches no file: a target outside every root is refused without even a
// stat. It returns the absolute root and path relative to it.
func audienceRoot(target, path string, roots []string) (root, rel string, err error) {
	if len(roots) == 0 {
		return "", "", &refusedError{fmt.Sprintf("target.file: %q is refused: file targets need --audience_roots, which is empty", target)}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	for _, r := range roots {
		ra, err := filepath.Abs(r)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(ra, abs); err == nil && filepath.IsLocal(rel) {
			return ra, rel, nil
		}
	}
	return "", "", &refusedError{fmt.Sprintf("target.file: %q is outside --audience_roots %v", target, roots)}
}

// errPathEscapes is the text of the error os.Root returns for a path that
// leads out of the root (the os package does not export it; the tests pin
// it).
const errPathEscapes = "path escapes from parent"

// openAudience opens a file target (a local path or file:// URI) confined
// to roots. The path is first checked lexically (audienceRoot); it is then
// opened through os.Root, which resolves symbolic links inside the root
// only: a link that is absolute or leads out of the root (even back into
// it through "..") is refused, and the file it names is never opened. Only
// regular files are read (opened non-blocking, so a FIFO cannot hang the
// worker). The error is a *refusedError for a target
// outside the roots, any other error a problem with the file.
func openAudience(uri string, roots []string) (*os.File, error) {
	path := strings.TrimPrefix(uri, "file://")
	if strings.Contains(path, "://") {
		return nil, fmt.Errorf("unsupported scheme in %q (local paths and file:// only)", uri)
	}
	rootDir, rel, err := audienceRoot(uri, path, roots)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return nil, fmt.Errorf("audience root: %w", err)
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO must not block the worker (it is refused
	// below as not a regular file); reads of a regular file ignore it.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			if pe.Err.Error() == errPathEscapes {
				return nil, &refusedError{fmt.Sprintf("target.file: %q leads outside --audience_roots %v (a symbolic link that is absolute or climbs out of its root)", uri, roots)}
			}
			return nil, fmt.Errorf("open %s: %w", path, pe.Err)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readFile reads one user id per line of a file target, confined to roots,
// from byte offset c.Pos, a page of up to page lines at a time while more
// allows, and moves c on: Pos to the first line not read, Done at the end
// of the file, Line, Invalid and FirstInvalid as it goes. Blank lines and
// lines starting with # are skipped; so is a line that is not a user id
// (pushflow.ValidUserID, after trimming surrounding space), counted in c;
// a repeated id is skipped within a slice (send's dedup claim catches one
// across slices). The error is a problem with the file, the request's
// outcome: a *refusedError when the file lies outside the roots.
func readFile(roots []string, uri string, c *Cursor, page int64, b *batcher, more func() bool) error {
	f, err := openAudience(uri, roots)
	if err != nil {
		c.Done = true
		return err
	}
	defer f.Close()
	if _, err := f.Seek(int64(c.Pos), io.SeekStart); err != nil {
		c.Done = true
		return err
	}
	rd := bufio.NewReaderSize(f, 64<<10)
	seen := make(map[string]struct{})
	for {
		for range page {
			line, n, long, err := readLine(rd)
			c.Pos += uint64(n)
			if n > 0 {
				c.Line++
			}
			switch u := strings.TrimSpace(line); {
			case long:
				c.invalid("longer than 64 KiB")
			case u == "" || strings.HasPrefix(u, "#"):
			default:
				if err := pushflow.ValidUserID(u); err != nil {
					c.invalid(err.Error())
				} else if _, dup := seen[u]; !dup {
					seen[u] = struct{}{}
					b.add(recipient.Recipient{UserID: u})
				}
			}
			if err == io.EOF {
				c.Done = true
				return nil
			}
			if err != nil {
				c.Done = true
				return err
			}
		}
		if !more() {
			return nil
		}
	}
}

// invalid counts a skipped line of a file audience, c.Line.
func (c *Cursor) invalid(problem string) {
	c.Invalid++
	if c.FirstInvalid == 0 {
		c.FirstInvalid, c.InvalidProblem = c.Line, problem
	}
}

// readLine reads one line, its newline included, and returns it with the
// bytes it took. A line longer than the reader's buffer is consumed and
// reported long, never held whole in memory.
func readLine(rd *bufio.Reader) (line string, n int, long bool, err error) {
	for {
		s, err := rd.ReadSlice('\n')
		n += len(s)
		if errors.Is(err, bufio.ErrBufferFull) {
			long = true
			continue
		}
		if !long {
			line = string(s)
		}
		return line, n, long, err
	}
}
