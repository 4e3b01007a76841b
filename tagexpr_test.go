package pushflow

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTagExpr(t *testing.T) {
	tests := []struct {
		in   string
		want string   // canonical String()
		tags []string // Tags()
	}{
		{"sports", "sports", []string{"sports"}},
		{"sports AND (vip OR NOT churned)", "sports AND (vip OR NOT churned)", []string{"churned", "sports", "vip"}},
		{"sports and (vip or not churned)", "sports AND (vip OR NOT churned)", []string{"churned", "sports", "vip"}},
		{"  a\tAnd\nb  ", "a AND b", []string{"a", "b"}},
		// Precedence: NOT > AND > OR.
		{"a OR b AND c", "a OR b AND c", []string{"a", "b", "c"}},
		{"(a OR b) AND c", "(a OR b) AND c", []string{"a", "b", "c"}},
		{"NOT a AND b", "NOT a AND b", []string{"a", "b"}},
		{"NOT (a AND b)", "NOT (a AND b)", []string{"a", "b"}},
		{"NOT NOT a", "NOT NOT a", []string{"a"}},
		// Redundant parentheses go; same operators flatten.
		{"((a))", "a", []string{"a"}},
		{"a AND (b AND c)", "a AND b AND c", []string{"a", "b", "c"}},
		{"(a OR b) OR (c OR d)", "a OR b OR c OR d", []string{"a", "b", "c", "d"}},
		{"(a AND b) OR c", "a AND b OR c", []string{"a", "b", "c"}},
		{"a AND (b OR c) AND NOT (d OR e)", "a AND (b OR c) AND NOT (d OR e)", []string{"a", "b", "c", "d", "e"}},
		// Tag characters; keywords only as whole words; tags are case-sensitive.
		{"lang:zh-CN AND v1.2_beta", "lang:zh-CN AND v1.2_beta", []string{"lang:zh-CN", "v1.2_beta"}},
		{"android OR ORacle OR nothing", "android OR ORacle OR nothing", []string{"ORacle", "android", "nothing"}},
		{"a OR a OR A", "a OR a OR A", []string{"A", "a"}},
		{"(a)AND(b)", "a AND b", []string{"a", "b"}},
	}
	for _, tt := range tests {
		e, err := ParseTagExpr(tt.in)
		if err != nil {
			t.Errorf("ParseTagExpr(%q) = %v, want nil error", tt.in, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("ParseTagExpr(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		if diff := cmp.Diff(tt.tags, e.Tags()); diff != "" {
			t.Errorf("ParseTagExpr(%q).Tags() mismatch (-want +got):\n%s", tt.in, diff)
		}
		// The canonical form is a fixed point.
		again, err := ParseTagExpr(e.String())
		if err != nil || again.String() != e.String() {
			t.Errorf("ParseTagExpr(%q) = %q, %v; want %q, nil", e.String(), again, err, e.String())
		}
	}
}

func TestParseTagExprErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
		pos  int
	}{
		{"", "tags: empty expression at 0", 0},
		{"   ", "tags: empty expression at 3", 3},
		{"sports AND ()", `tags: unexpected ")" at 12`, 12},
		{"sports AND", "tags: unexpected end at 10", 10},
		{"AND sports", `tags: unexpected "AND" at 0`, 0},
		{"a OR OR b", `tags: unexpected "OR" at 5`, 5},
		{"NOT", "tags: unexpected end at 3", 3},
		{"a b", `tags: unexpected "b" at 2`, 2},
		{"a)", `tags: unexpected ")" at 1`, 1},
		{"(a", `tags: unclosed "(" at 0`, 0},
		{"x AND ((a OR b)", `tags: unclosed "(" at 6`, 6},
		{"(a b)", `tags: unexpected "b" at 3`, 3},
		{"a AND b!", `tags: invalid character "!" at 7`, 7},
		{"a & b", `tags: invalid character "&" at 2`, 2},
		{"café", `tags: invalid character "é" at 3`, 3},
		{"a AND \xff", `tags: invalid character "\xff" at 6`, 6},
		{"\"a\"", `tags: invalid character "\"" at 0`, 0},
		{strings.Repeat("(", 101) + "a" + strings.Repeat(")", 101), "tags: nested deeper than 100 at 100", 100},
		{strings.Repeat("NOT ", 101) + "a", "tags: nested deeper than 100 at 400", 400},
	}
	for _, tt := range tests {
		_, err := ParseTagExpr(tt.in)
		var te *TagExprError
		if !errors.As(err, &te) {
			t.Errorf("ParseTagExpr(%q) = %v, want *TagExprError %q", tt.in, err, tt.want)
			continue
		}
		if err.Error() != tt.want || te.Pos != tt.pos {
			t.Errorf("ParseTagExpr(%q) = %q (pos %d), want %q (pos %d)", tt.in, err, te.Pos, tt.want, tt.pos)
		}
	}
	// 100 levels are fine.
	in := strings.Repeat("(", 100) + "a" + strings.Repeat(")", 100)
	if e, err := ParseTagExpr(in); err != nil || e.String() != "a" {
		t.Errorf("ParseTagExpr(100 parentheses) = %q, %v; want \"a\", nil", e, err)
	}
}

func TestTagExprEval(t *testing.T) {
	tests := []struct {
		expr string
		tags string // the recipient's tags, space-separated
		want bool
	}{
		{"sports", "sports", true},
		{"sports", "news", false},
		{"sports", "", false},
		{"Sports", "sports", false},
		{"sports AND (vip OR NOT churned)", "sports", true},
		{"sports AND (vip OR NOT churned)", "sports churned", false},
		{"sports AND (vip OR NOT churned)", "sports churned vip", true},
		{"sports AND (vip OR NOT churned)", "vip", false},
		{"a OR b AND c", "a", true},  // a OR (b AND c)
		{"a OR b AND c", "b", false}, // not (a OR b) AND c
		{"a OR b AND c", "b c", true},
		{"NOT a AND b", "b", true}, // (NOT a) AND b
		{"NOT a AND b", "a b", false},
		{"NOT (a AND b)", "a", true},
		{"NOT (a AND b)", "a b", false},
		{"NOT NOT a", "a", true},
		{"a AND b AND c", "a b", false},
		{"a AND b AND c", "a b c", true},
		{"a OR b OR c", "c", true},
		{"a OR b OR c", "d", false},
	}
	for _, tt := range tests {
		e, err := ParseTagExpr(tt.expr)
		if err != nil {
			t.Fatalf("ParseTagExpr(%q) = %v", tt.expr, err)
		}
		has := map[string]bool{}
		for _, tag := range strings.Fields(tt.tags) {
			has[tag] = true
		}
		if got := e.Eval(func(tag string) bool { return has[tag] }); got != tt.want {
			t.Errorf("ParseTagExpr(%q).Eval(%q) = %v, want %v", tt.expr, tt.tags, got, tt.want)
		}
	}
}

func TestTagExprEvalShortCircuits(t *testing.T) {
	e, err := ParseTagExpr("a OR b")
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	e.Eval(func(tag string) bool { asked = append(asked, tag); return true })
	if diff := cmp.Diff([]string{"a"}, asked); diff != "" {
		t.Errorf("Eval(a OR b) with a set asked (-want +got):\n%s", diff)
	}
}

func TestTagExprZero(t *testing.T) {
	var e TagExpr
	if e.Eval(func(string) bool { return true }) {
		t.Errorf("TagExpr{}.Eval(all) = true, want false")
	}
	if got := e.String(); got != "" {
		t.Errorf("TagExpr{}.String() = %q, want \"\"", got)
	}
	if got := e.Tags(); len(got) != 0 {
		t.Errorf("TagExpr{}.Tags() = %q, want none", got)
	}
}

func TestRequiredTag(t *testing.T) {
	for _, tc := range []struct {
		expr   string
		want   string
		wantOK bool
	}{
		{"sports", "sports", true},
		{"sports AND NOT churned", "sports", true},
		{"NOT churned AND (vip OR news) AND sports", "sports", true},
		{"sports OR news", "", false},
		{"NOT churned", "", false},
		{"(a OR b) AND (c OR d)", "", false},
	} {
		e, err := ParseTagExpr(tc.expr)
		if err != nil {
			t.Fatalf("ParseTagExpr(%q): %v", tc.expr, err)
		}
		got, ok := e.RequiredTag()
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("ParseTagExpr(%q).RequiredTag() = %q, %v, want %q, %v", tc.expr, got, ok, tc.want, tc.wantOK)
		}
	}
}
