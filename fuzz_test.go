package pushflow

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Garbage seeds shared by the decoder fuzz targets.
var garbageSeeds = []string{
	"", " ", "{", "}", "[]", "null", "true", "1", `"v"`, "{}", `{"v":1}`, `{"v":1} {}`, `{"v":1}x`,
	`{"v":"1"}`, `{"v":1.0}`, `{"v":-0}`, `{"v":1e0}`, `{"v":18446744073709551617}`,
	"\xff\xfe\x00", `{"a":"\xff"}`, `{"\u0000":1}`, strings.Repeat("[", 200), strings.Repeat(`{"a":`, 100),
}

// fuzzDecode checks the decoders' contract: never panic; fail with a
// *DecodeError or a *ValidationError naming a field; or return a record
// that marshals and decodes again to an equal record.
func fuzzDecode[R any](t *testing.T, b []byte, decode func([]byte) (R, error)) {
	r, err := decode(b)
	if err != nil {
		switch e := err.(type) {
		case *DecodeError:
			if e.Problem == "" {
				t.Fatalf("decode(%q) = DecodeError with no problem", b)
			}
		case *ValidationError:
			if e.Field == "" || e.Problem == "" {
				t.Fatalf("decode(%q) = ValidationError %+v, want a field and a problem", b, e)
			}
		default:
			t.Fatalf("decode(%q) = %T %v, want *DecodeError or *ValidationError", b, err, err)
		}
		return
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("json.Marshal(decode(%q)) = %v", b, err)
	}
	again, err := decode(out)
	if err != nil {
		t.Fatalf("decode(json.Marshal(decode(%q))) = %v; marshalled %s", b, err, out)
	}
	if diff := cmp.Diff(r, again); diff != "" {
		t.Fatalf("round trip of %q mismatch (-first +second):\n%s", b, diff)
	}
}

func FuzzDecodePushRequest(f *testing.F) {
	seeds := []string{
		basePush,
		`{"v":1,"id":"r-2","app":"com.example.news","target":{"devices":["d1"]},"notification":{"body":"b","badge":0}}`,
		`{"v":1,"id":"r-3","app":"com.example.news","target":{"alias":{"type":"phone","values":["139"]}},"notification":{"data":{"k":"v"}}}`,
		`{"v":1,"id":"r-4","app":"com.example.news","target":{"tags":"sports AND (vip OR NOT churned)"},"notification":{"title":"t"},"priority":"bulk"}`,
		`{"v":1,"id":"r-5","app":"com.example.news","target":{"broadcast":true},"notification":{"content_available":true,"push_type":"background"},"ttl_seconds":0}`,
		`{"v":1,"id":"r-6","app":"com.example.news","target":{"file":"file:///a.txt"},"notification":{"title":"t"},"created_at":"2026-11-22T17:59:58.5+08:00"}`,
		`{"v":1,"id":"r-7","app":"a","target":{"users":["a"],"broadcast":true},"notification":{"title":"t"}}`,
		`{"v":1,"id":"r-8","app":"a","target":{"users":[]},"notification":{}}`,
		`{"v":1,"id":"r-9","app":"a","target":{"broadcast":false},"notification":{"title":"t","badge":"1"}}`,
		`{"v":1,"id":"r-10","app":"a","target":{"tags":"a AND ()"},"notification":{"title":"t","data":{"k":1}}}`,
		`{"v":2,"id":"r","app":"a b","target":{},"notification":{"title":"t"},"created_at":"yesterday"}`,
		"{\"v\":1,\"id\":\"r-11\",\"app\":\"a\",\"target\":{\"users\":[\"u\xff\"]},\"notification\":{\"title\":\"Gr\xfc\xdfe\",\"data\":{\"k\xc3\":\"v\"}}}",
		`{"v":1,"id":"r-12","app":"a","target":{"users":["u1"]},"notification":{"title":"a\ud800b","body":"\ud83d\ude00","data":{"\udc00":"\\ud800"}}}`,
		`{"v":1,"id":"r-13","app":"a","target":{"file":"/etc/passwd"},"notification":{"title":"t"}}`,
		`{"v":1,"id":"r-14","app":"a","target":{"users":["root:x:0:0","u 1",""]},"notification":{"title":"t"}}`,
	}
	for _, s := range append(seeds, garbageSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzDecode(t, b, DecodePushRequest)
	})
}

func FuzzDecodeDeviceEvent(f *testing.F) {
	seeds := []string{
		baseRegister, baseUnregister, baseSettings,
		`{"v":1,"op":"register","app":"a","user_id":"u","device_id":"d","platform":"android","token":"t","tags":[],"alias":{}}`,
		`{"v":1,"op":"settings","app":"a","user_id":"u","settings":{"opt_out":["marketing"]}}`,
		`{"v":1,"op":"settings","app":"a","user_id":"u","settings":{"timezone":"Mars/Base","quiet_hours":"25:00-08:00"}}`,
		`{"v":1,"op":"settings","app":"a","user_id":"u","settings":{}}`,
		`{"v":1,"op":"register","app":"a","user_id":"u","device_id":"d","platform":"ios","token":"zz"}`,
		`{"v":1,"op":"register","app":"a","user_id":"u","alias":{"":"x","p":""},"tags":[""]}`,
		`{"v":1,"op":"delete"}`,
	}
	for _, s := range append(seeds, garbageSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzDecode(t, b, DecodeDeviceEvent)
	})
}

// FuzzParseTagExpr checks that parsing never panics, that errors carry a
// position inside the input, and that the canonical form parses back to
// itself and evaluates the same.
func FuzzParseTagExpr(f *testing.F) {
	for _, s := range []string{"sports AND (vip OR NOT churned)", "a OR b AND c", "NOT NOT a", "((a))", "a AND", "(a", "a)", "café", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseTagExpr(s)
		if err != nil {
			te, ok := err.(*TagExprError)
			if !ok || te.Pos < 0 || te.Pos > len(s) {
				t.Fatalf("ParseTagExpr(%q) = %v, want *TagExprError with a position in 0..%d", s, err, len(s))
			}
			return
		}
		canon := e.String()
		again, err := ParseTagExpr(canon)
		if err != nil || again.String() != canon {
			t.Fatalf("ParseTagExpr(%q) = %q, %v; want %q, nil", canon, again, err, canon)
		}
		// Compare Eval on a few tag sets derived from the expression.
		tags := e.Tags()
		for mask := range 1 << min(len(tags), 6) {
			has := func(tag string) bool {
				for i, x := range tags[:min(len(tags), 6)] {
					if x == tag {
						return mask&(1<<i) != 0
					}
				}
				return false
			}
			if e.Eval(has) != again.Eval(has) {
				t.Fatalf("ParseTagExpr(%q) and its canonical form %q disagree on tags mask %b", s, canon, mask)
			}
		}
	})
}
