package redisio

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeDeviceJSON(t *testing.T) {
	tests := []struct {
		in   string
		want deviceJSON
		fast bool // taken by the fast path
	}{
		{`{"token":"abc","platform":"ios","updated_at":"2026-11-22T09:00:00.000000000Z"}`,
			deviceJSON{Token: "abc", Platform: "ios", UpdatedAt: "2026-11-22T09:00:00.000000000Z"}, true},
		{`{"token":"abc","platform":"ios","topic":"com.example.news.voip","updated_at":"x"}`,
			deviceJSON{Token: "abc", Platform: "ios", Topic: "com.example.news.voip", UpdatedAt: "x"}, true},
		{`{"unknown":"1","token":"t"}`, deviceJSON{Token: "t"}, true},
		{`{}`, deviceJSON{}, true},
		{`{"token":"a\"b","platform":"ios"}`, deviceJSON{Token: `a"b`, Platform: "ios"}, false},
		{`{"token":"\u00e9"}`, deviceJSON{Token: "é"}, false},
		{`{ "token" : "a" }`, deviceJSON{Token: "a"}, false},
		{`{"token":"a","n":1}`, deviceJSON{Token: "a"}, false},
		{`{"token":"a",}`, deviceJSON{}, false},
	}
	for _, tt := range tests {
		got, err := decodeDeviceJSON(tt.in)
		var want deviceJSON
		wantErr := json.Unmarshal([]byte(tt.in), &want)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("decodeDeviceJSON(%s) error = %v, want %v (as encoding/json)", tt.in, err, wantErr)
		}
		if err == nil {
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(deviceJSON{})); diff != "" {
				t.Errorf("decodeDeviceJSON(%s) (-want +got):\n%s", tt.in, diff)
			}
		}
		if _, fast := parseFlat(tt.in); fast != tt.fast {
			t.Errorf("parseFlat(%s) ok = %v, want %v", tt.in, fast, tt.fast)
		}
	}
}

// FuzzDecodeDeviceJSON checks that the fast path agrees with encoding/json.
func FuzzDecodeDeviceJSON(f *testing.F) {
	f.Add(`{"token":"abc","platform":"ios","updated_at":"2026-11-22T09:00:00.000000000Z"}`)
	f.Add(`{"token":"a","topic":"t"}`)
	f.Add(`{"token":"a\tb"}`)
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := parseFlat(in)
		if !ok {
			return
		}
		var want deviceJSON
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("parseFlat(%q) accepted what encoding/json rejects: %v", in, err)
		}
		if got != want {
			t.Fatalf("parseFlat(%q) = %+v, encoding/json gives %+v", in, got, want)
		}
	})
}
