package pushflow

// Tag expressions: the audience language of Target.Tags.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TagExpr is a parsed tag expression such as `sports AND (vip OR NOT
// churned)`. The zero value matches nothing.
type TagExpr struct {
	root *tagNode
}

// TagExprError reports where and why a tag expression does not parse.
type TagExprError struct {
	// Pos is the byte offset of the problem in the expression, from 0.
	Pos int
	// Problem says what is wrong, e.g. `unexpected ")"`.
	Problem string
}

// Error returns `tags: <problem> at <pos>`.
func (e *TagExprError) Error() string { return "tags: " + e.problem() }

func (e *TagExprError) problem() string { return fmt.Sprintf("%s at %d", e.Problem, e.Pos) }

// maxTagDepth bounds nesting (parentheses and NOT), so a hostile expression
// cannot recurse the parser deep.
const maxTagDepth = 100

type tagOp uint8

// Operators, in increasing precedence.
const (
	tagOr tagOp = iota
	tagAnd
	tagNot
	tagLeaf
)

type tagNode struct {
	op   tagOp
	tag  string     // tagLeaf
	args []*tagNode // tagNot: one; tagAnd, tagOr: two or more, none of the same op
}

// ParseTagExpr parses a tag expression:
//
//	expr    = and { OR and }
//	and     = unary { AND unary }
//	unary   = NOT unary | primary
//	primary = tag | "(" expr ")"
//	tag     = 1*( letter | digit | "_" | "." | ":" | "-" )
//
// Keywords AND, OR and NOT are case-insensitive and cannot be tags; tags are
// ASCII and case-sensitive. Precedence is NOT, then AND, then OR; AND and OR
// associate (a AND (b AND c) is a AND b AND c). Tokens are separated by
// spaces, tabs or newlines. Nesting is limited to 100 levels. The error is a
// *TagExprError with the byte offset of the problem, e.g. `tags: unexpected
// ")" at 12`.
func ParseTagExpr(s string) (TagExpr, error) {
	p := &tagParser{s: s}
	p.next()
	if p.tok.kind == tokEnd {
		return TagExpr{}, &TagExprError{Pos: p.tok.pos, Problem: "empty expression"}
	}
	n := p.or()
	if p.err == nil && p.tok.kind != tokEnd {
		p.unexpected()
	}
	if p.err != nil {
		return TagExpr{}, p.err
	}
	return TagExpr{root: n}, nil
}

// Eval reports whether the expression holds for a recipient that has
// exactly the tags for which has returns true. Evaluation short-circuits.
func (e TagExpr) Eval(has func(tag string) bool) bool {
	if e.root == nil {
		return false
	}
	return e.root.eval(has)
}

func (n *tagNode) eval(has func(string) bool) bool {
	switch n.op {
	case tagLeaf:
		return has(n.tag)
	case tagNot:
		return !n.args[0].eval(has)
	case tagAnd:
		for _, a := range n.args {
			if !a.eval(has) {
				return false
			}
		}
		return true
	default: // tagOr
		for _, a := range n.args {
			if a.eval(has) {
				return true
			}
		}
		return false
	}
}

// Tags returns the distinct tags the expression references, sorted.
func (e TagExpr) Tags() []string {
	var tags []string
	var walk func(*tagNode)
	walk = func(n *tagNode) {
		if n.op == tagLeaf {
			tags = append(tags, n.tag)
		}
		for _, a := range n.args {
			walk(a)
		}
	}
	if e.root != nil {
		walk(e.root)
	}
	slices.Sort(tags)
	return slices.Compact(tags)
}

// String returns the canonical form: upper-case keywords, single spaces, and
// parentheses only where precedence needs them. It parses back to an equal
// expression.
func (e TagExpr) String() string {
	if e.root == nil {
		return ""
	}
	var b strings.Builder
	e.root.write(&b)
	return b.String()
}

func (n *tagNode) write(b *strings.Builder) {
	switch n.op {
	case tagLeaf:
		b.WriteString(n.tag)
	case tagNot:
		b.WriteString("NOT ")
		n.args[0].writeIn(b, tagNot)
	default:
		sep := " OR "
		if n.op == tagAnd {
			sep = " AND "
		}
		for i, a := range n.args {
			if i > 0 {
				b.WriteString(sep)
			}
			a.writeIn(b, n.op)
		}
	}
}

// writeIn writes n as an operand of parent, in parentheses when n binds
// less tightly.
func (n *tagNode) writeIn(b *strings.Builder, parent tagOp) {
	if n.op < parent {
		b.WriteByte('(')
		n.write(b)
		b.WriteByte(')')
		return
	}
	n.write(b)
}

type tokKind uint8

const (
	tokEnd tokKind = iota
	tokTag
	tokAnd
	tokOr
	tokNot
	tokOpen
	tokClose
	tokBad
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type tagParser struct {
	s     string
	i     int // next byte to scan
	tok   token
	depth int
	err   *TagExprError
}

func isTagByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '-'
}

// next scans the next token into p.tok.
func (p *tagParser) next() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
	start := p.i
	if p.i == len(p.s) {
		p.tok = token{kind: tokEnd, pos: start}
		return
	}
	switch c := p.s[p.i]; {
	case c == '(':
		p.i++
		p.tok = token{kind: tokOpen, text: "(", pos: start}
	case c == ')':
		p.i++
		p.tok = token{kind: tokClose, text: ")", pos: start}
	case isTagByte(c):
		for p.i < len(p.s) && isTagByte(p.s[p.i]) {
			p.i++
		}
		text := p.s[start:p.i]
		kind := tokTag
		switch {
		case strings.EqualFold(text, "AND"):
			kind = tokAnd
		case strings.EqualFold(text, "OR"):
			kind = tokOr
		case strings.EqualFold(text, "NOT"):
			kind = tokNot
		}
		p.tok = token{kind: kind, text: text, pos: start}
	default:
		_, size := utf8.DecodeRuneInString(p.s[p.i:])
		p.i += size
		p.tok = token{kind: tokBad, text: p.s[start:p.i], pos: start}
	}
}

// fail records the first problem.
func (p *tagParser) fail(pos int, problem string) {
	if p.err == nil {
		p.err = &TagExprError{Pos: pos, Problem: problem}
	}
}

// unexpected reports the current token.
func (p *tagParser) unexpected() {
	switch p.tok.kind {
	case tokEnd:
		p.fail(p.tok.pos, "unexpected end")
	case tokBad:
		p.fail(p.tok.pos, "invalid character "+strconv.Quote(p.tok.text))
	default:
		p.fail(p.tok.pos, "unexpected "+quote(p.tok.text))
	}
}

// or parses `and { OR and }`.
func (p *tagParser) or() *tagNode {
	return p.list(tagOr, tokOr, p.and)
}

// and parses `unary { AND unary }`.
func (p *tagParser) and() *tagNode {
	return p.list(tagAnd, tokAnd, p.unary)
}

// list parses operands joined by sep into one n-ary node of op, flattening
// operands that are themselves op (from parentheses).
func (p *tagParser) list(op tagOp, sep tokKind, operand func() *tagNode) *tagNode {
	first := operand()
	if p.err != nil || p.tok.kind != sep {
		return first
	}
	n := &tagNode{op: op}
	add := func(a *tagNode) {
		if a.op == op {
			n.args = append(n.args, a.args...)
		} else {
			n.args = append(n.args, a)
		}
	}
	add(first)
	for p.err == nil && p.tok.kind == sep {
		p.next()
		a := operand()
		if p.err != nil {
			return nil
		}
		add(a)
	}
	return n
}

// unary parses `NOT unary | primary`.
func (p *tagParser) unary() *tagNode {
	if p.tok.kind != tokNot {
		return p.primary()
	}
	if !p.enter() {
		return nil
	}
	defer p.leave()
	p.next()
	a := p.unary()
	if p.err != nil {
		return nil
	}
	return &tagNode{op: tagNot, args: []*tagNode{a}}
}

// primary parses `tag | "(" expr ")"`.
func (p *tagParser) primary() *tagNode {
	switch p.tok.kind {
	case tokTag:
		n := &tagNode{op: tagLeaf, tag: p.tok.text}
		p.next()
		return n
	case tokOpen:
		open := p.tok.pos
		if !p.enter() {
			return nil
		}
		defer p.leave()
		p.next()
		n := p.or()
		if p.err != nil {
			return nil
		}
		if p.tok.kind == tokEnd {
			p.fail(open, `unclosed "("`)
			return nil
		}
		if p.tok.kind != tokClose {
			p.unexpected()
			return nil
		}
		p.next()
		return n
	}
	p.unexpected()
	return nil
}

func (p *tagParser) enter() bool {
	p.depth++
	if p.depth > maxTagDepth {
		p.fail(p.tok.pos, fmt.Sprintf("nested deeper than %d", maxTagDepth))
		return false
	}
	return true
}

func (p *tagParser) leave() { p.depth-- }

// RequiredTag returns a tag that every user matching e must carry — the
// expression itself when it is a lone tag, or a positive tag of a top-level
// AND — so an audience can be scanned from that tag's members instead of
// every user of the app. ok is false when no such tag exists (OR, NOT at the
// top).
func (e TagExpr) RequiredTag() (tag string, ok bool) {
	if e.root == nil {
		return "", false
	}
	switch e.root.op {
	case tagLeaf:
		return e.root.tag, true
	case tagAnd:
		for _, a := range e.root.args {
			if a.op == tagLeaf {
				return a.tag, true
			}
		}
	}
	return "", false
}
