package pushflow

// The text check of the decoders: encoding/json replaces invalid UTF-8 and
// lone UTF-16 surrogate escapes with U+FFFD without an error, so a record
// with broken text would decode "successfully" and be pushed with
// replacement characters. The decoders check the raw bytes instead.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// checkText returns a *ValidationError for the first string of b (keys
// included, known fields or not, in byte order) whose raw bytes are not
// valid UTF-8 or that escapes a lone UTF-16 surrogate ("\ud800" not followed
// by a low surrogate escape, or a low surrogate on its own), and nil when
// there is none. b must be one well-formed JSON value (parseObject has
// parsed it). The walk runs only when b has a byte that could be a problem,
// so well-formed ASCII records pay one pass of utf8.Valid and bytes.Contains.
func checkText(b []byte) error {
	if utf8.Valid(b) && !bytes.Contains(b, []byte(`\u`)) {
		return nil
	}
	s := textScanner{b: b}
	s.value("")
	return s.err
}

// textScanner walks well-formed JSON, keeping the path of the value it is
// in, until it finds the first bad string.
type textScanner struct {
	b   []byte
	i   int
	err error
}

func (s *textScanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// value scans the value at s.i, found at path.
func (s *textScanner) value(path string) {
	s.ws()
	if s.i >= len(s.b) || s.err != nil {
		return
	}
	switch s.b[s.i] {
	case '{':
		s.i++
		for s.err == nil {
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] == '}' {
				s.i++
				return
			}
			if s.b[s.i] == ',' {
				s.i++
				continue
			}
			start := s.i
			problem := s.str()
			var key string
			_ = json.Unmarshal(s.b[start:s.i], &key) // well-formed: cannot fail
			field := key
			if path != "" {
				field = path + "." + key
			}
			if problem != "" {
				s.err = &ValidationError{Field: field, Problem: "key: " + problem}
				return
			}
			s.ws()
			s.i++ // ':'
			s.value(field)
		}
	case '[':
		s.i++
		for n := 0; s.err == nil; n++ {
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] == ']' {
				s.i++
				return
			}
			if s.b[s.i] == ',' {
				s.i++
			}
			s.value(fmt.Sprintf("%s[%d]", path, n))
		}
	case '"':
		if problem := s.str(); problem != "" {
			if path == "" {
				path = "(record)" // parseObject only passes objects; for completeness
			}
			s.err = &ValidationError{Field: path, Problem: problem}
		}
	default: // number, true, false, null
		for s.i < len(s.b) && !bytes.ContainsRune([]byte(",]} \t\r\n"), rune(s.b[s.i])) {
			s.i++
		}
	}
}

// str scans the string starting at the quote at s.i, leaves s.i after its
// closing quote, and returns what is wrong with its text, or "".
func (s *textScanner) str() string {
	s.i++ // opening quote
	problem := ""
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return problem
		case c == '\\':
			at := s.i
			if s.i+1 < len(s.b) && s.b[s.i+1] == 'u' {
				r, ok := hex4(s.b[s.i+2:])
				s.i += 6
				switch {
				case 0xD800 <= r && r < 0xDC00: // high surrogate: a low one must follow
					low, ok := rune(0), false
					if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
						low, ok = hex4(s.b[s.i+2:])
					}
					if ok && 0xDC00 <= low && low < 0xE000 {
						s.i += 6
					} else if problem == "" {
						problem = fmt.Sprintf(`lone UTF-16 surrogate escape %s at byte %d`, s.b[at:at+6], at)
					}
				case ok && 0xDC00 <= r && r < 0xE000:
					if problem == "" {
						problem = fmt.Sprintf(`lone UTF-16 surrogate escape %s at byte %d`, s.b[at:at+6], at)
					}
				}
			} else {
				s.i += 2
			}
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 && problem == "" {
				problem = fmt.Sprintf("invalid UTF-8 at byte %d", s.i)
			}
			s.i += size
		}
	}
	return problem
}

// hex4 parses the four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
