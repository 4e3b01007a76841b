package deploy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// parseYAML parses the YAML subset the manifests in this directory are
// written in, strictly: documents separated by "---"; block mappings and
// block sequences (indented, or a sequence at its key's indentation); plain,
// single- and double-quoted scalars; flow sequences of scalars; "{}"; and
// literal/folded block scalars ("|", "|-", ">"). Comments are full lines or
// " #" after a value. Anything else — anchors, aliases, tags, flow mappings,
// tabs, a plain scalar holding ": ", duplicate keys, YAML 1.1 booleans like
// yes/no/on/off left unquoted — is an error, so a file that parses here is
// also unambiguous YAML. It is not a full YAML parser: kubectl's own parse is
// run too when kubectl is installed (TestFlinkManifests).
//
// Mappings are map[string]any, sequences []any, scalars string (untyped),
// empty values nil.
func parseYAML(src string) ([]any, error) {
	var docs []any
	var cur []string
	flush := func() error {
		p := &yparser{lines: cur}
		v, err := p.document()
		if err != nil {
			return err
		}
		if v != nil {
			docs = append(docs, v)
		}
		cur = nil
		return nil
	}
	for _, l := range strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n") {
		if strings.TrimRight(l, " ") == "---" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		cur = append(cur, l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

type yparser struct {
	lines []string
	pos   int
}

func (p *yparser) errf(format string, args ...any) error {
	return fmt.Errorf("line %d of document: %s", p.pos+1, fmt.Sprintf(format, args...))
}

// next skips blank and comment lines and returns the next line's indent
// and text (without the indent); ok is false at the end.
func (p *yparser) next() (indent int, text string, ok bool, err error) {
	for ; p.pos < len(p.lines); p.pos++ {
		l := p.lines[p.pos]
		t := strings.TrimLeft(l, " ")
		if strings.HasPrefix(t, "\t") || strings.Contains(l[:len(l)-len(t)], "\t") {
			return 0, "", false, p.errf("tab in indentation")
		}
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		return len(l) - len(t), t, true, nil
	}
	return 0, "", false, nil
}

func (p *yparser) document() (any, error) {
	indent, _, ok, err := p.next()
	if err != nil || !ok {
		return nil, err
	}
	v, err := p.node(indent)
	if err != nil {
		return nil, err
	}
	if _, _, ok, err := p.next(); err != nil {
		return nil, err
	} else if ok {
		return nil, p.errf("unexpected content after the document's root node")
	}
	return v, nil
}

// node parses the block node starting at the next line, at indent.
func (p *yparser) node(indent int) (any, error) {
	_, text, _, err := p.next()
	if err != nil {
		return nil, err
	}
	if text == "-" || strings.HasPrefix(text, "- ") {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

var keyRE = regexp.MustCompile(`^("(?:[^"\\]|\\.)*"|'[^']*'|[^\s'"#\-\[\]{}&*!|>%@` + "`" + `][^:#]*?|-[^\s:#][^:#]*?):(?:\s+|$)`)

func (p *yparser) mapping(indent int) (map[string]any, error) {
	m := map[string]any{}
	for {
		ind, text, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok || ind < indent {
			return m, nil
		}
		if ind > indent {
			return nil, p.errf("unexpected indentation %d (mapping at %d)", ind, indent)
		}
		loc := keyRE.FindStringSubmatchIndex(text)
		if loc == nil {
			return nil, p.errf("want \"key: value\", got %q", text)
		}
		key, err := unquote(text[loc[2]:loc[3]])
		if err != nil {
			return nil, p.errf("key %q: %v", text[loc[2]:loc[3]], err)
		}
		if _, dup := m[key]; dup {
			return nil, p.errf("duplicate key %q", key)
		}
		rest := text[loc[1]:]
		p.pos++
		v, err := p.value(indent, rest, true)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
}

// value parses what follows "key:" or "- " on a line whose node is at
// indent. rest is the rest of that line.
func (p *yparser) value(indent int, rest string, inMapping bool) (any, error) {
	rest = stripComment(rest)
	switch {
	case rest == "":
		ind, text, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		switch {
		case !ok || ind < indent:
			return nil, nil
		case ind > indent:
			return p.node(ind)
		case inMapping && (text == "-" || strings.HasPrefix(text, "- ")):
			return p.sequence(ind) // a sequence at its key's indentation
		}
		return nil, nil
	case rest == "|" || rest == "|-" || rest == ">" || rest == ">-":
		return p.blockScalar(indent, rest), nil
	}
	return p.scalar(rest)
}

func (p *yparser) sequence(indent int) ([]any, error) {
	var s []any
	for {
		ind, text, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok || ind < indent {
			return s, nil
		}
		if ind > indent {
			return nil, p.errf("unexpected indentation %d (sequence at %d)", ind, indent)
		}
		if text != "-" && !strings.HasPrefix(text, "- ") {
			return s, nil // the next key of the mapping holding this sequence
		}
		item := strings.TrimLeft(strings.TrimPrefix(text, "-"), " ")
		col := ind + len(text) - len(item)
		switch {
		case item == "" || strings.HasPrefix(item, "#"):
			p.pos++
			v, err := p.value(indent, "", false)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		case item == "-" || strings.HasPrefix(item, "- "):
			return nil, p.errf("nested sequences on one line are not supported")
		case keyRE.MatchString(item):
			// "- key: value": a mapping whose keys are at col.
			p.lines[p.pos] = strings.Repeat(" ", col) + item
			m, err := p.mapping(col)
			if err != nil {
				return nil, err
			}
			s = append(s, m)
		default:
			p.pos++
			v, err := p.value(indent, item, false)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
	}
}

// blockScalar collects the lines indented deeper than indent.
func (p *yparser) blockScalar(indent int, style string) string {
	var lines []string
	base := -1
	for ; p.pos < len(p.lines); p.pos++ {
		l := p.lines[p.pos]
		t := strings.TrimLeft(l, " ")
		if t == "" {
			lines = append(lines, "")
			continue
		}
		ind := len(l) - len(t)
		if ind <= indent {
			break
		}
		if base < 0 {
			base = ind
		}
		lines = append(lines, l[min(base, ind):])
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	sep := "\n"
	if strings.HasPrefix(style, ">") {
		sep = " "
	}
	out := strings.Join(lines, sep)
	if !strings.HasSuffix(style, "-") {
		out += "\n"
	}
	return out
}

var ambiguous = map[string]bool{"yes": true, "no": true, "on": true, "off": true, "y": true, "n": true}

func (p *yparser) scalar(s string) (any, error) {
	switch {
	case s == "{}":
		return map[string]any{}, nil
	case s == "[]":
		return []any{}, nil
	case strings.HasPrefix(s, "{"):
		return nil, p.errf("flow mappings are not supported: %q", s)
	case strings.HasPrefix(s, "["):
		if !strings.HasSuffix(s, "]") {
			return nil, p.errf("unterminated flow sequence %q", s)
		}
		var out []any
		for _, it := range splitFlow(s[1 : len(s)-1]) {
			it = strings.TrimSpace(it)
			if it == "" || strings.ContainsAny(it[:1], "[{") {
				return nil, p.errf("unsupported flow sequence item %q", it)
			}
			v, err := unquote(it)
			if err != nil {
				return nil, p.errf("%q: %v", it, err)
			}
			out = append(out, v)
		}
		return out, nil
	case strings.ContainsAny(s[:1], "&*!|>%@`"):
		return nil, p.errf("unsupported YAML (anchor, alias, tag or reserved indicator): %q", s)
	}
	if s[0] != '"' && s[0] != '\'' {
		if strings.Contains(s, ": ") {
			return nil, p.errf("plain scalar %q contains \": \" (quote it)", s)
		}
		if ambiguous[strings.ToLower(s)] {
			return nil, p.errf("plain %q is a boolean in YAML 1.1 and a string in 1.2 (quote it)", s)
		}
	}
	v, err := unquote(s)
	if err != nil {
		return nil, p.errf("%q: %v", s, err)
	}
	return v, nil
}

func unquote(s string) (string, error) {
	switch {
	case strings.HasPrefix(s, `"`):
		return strconv.Unquote(s)
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return "", fmt.Errorf("unterminated single-quoted string")
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	}
	return strings.TrimSpace(s), nil
}

// stripComment removes a " #" comment outside quotes.
func stripComment(s string) string {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else if c == '\\' && q == '"' {
				i++
			}
		case c == '"' || c == '\'':
			q = c
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return strings.TrimRight(s[:i], " ")
		}
	}
	return strings.TrimRight(s, " ")
}

// splitFlow splits a flow sequence's inside at commas outside quotes.
func splitFlow(s string) []string {
	var out []string
	var q byte
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else if c == '\\' && q == '"' {
				i++
			}
		case c == '"' || c == '\'':
			q = c
		case c == ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if strings.TrimSpace(s[start:]) != "" || len(out) > 0 {
		out = append(out, s[start:])
	}
	return out
}
