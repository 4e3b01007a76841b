package redisio

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// decodeDeviceJSON decodes a device entry of a user's hash. Entries are read
// for every recipient, so the flat, escape-free objects this package writes
// take a fast path that allocates nothing; anything else goes through
// encoding/json, which gives the same result.
func decodeDeviceJSON(v string) (deviceJSON, error) {
	if j, ok := parseFlat(v); ok {
		return j, nil
	}
	var j deviceJSON
	err := json.Unmarshal([]byte(v), &j)
	return j, err
}

// parseFlat parses {"key":"value",...} without whitespace or escapes, the
// valid UTF-8 form json.Marshal gives a deviceJSON. It reports false for
// anything else.
func parseFlat(v string) (j deviceJSON, ok bool) {
	if strings.IndexByte(v, '\\') >= 0 || len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' || !utf8.ValidString(v) {
		return j, false
	}
	s := v[1 : len(v)-1]
	for s != "" {
		key, rest, ok := cutString(s)
		if !ok || rest == "" || rest[0] != ':' {
			return j, false
		}
		val, rest, ok := cutString(rest[1:])
		if !ok {
			return j, false
		}
		switch key {
		case "token":
			j.Token = val
		case "platform":
			j.Platform = val
		case "topic":
			j.Topic = val
		case "updated_at":
			j.UpdatedAt = val
		default:
			// encoding/json matches field names case-insensitively.
			for _, k := range [...]string{"token", "platform", "topic", "updated_at"} {
				if strings.EqualFold(key, k) {
					return j, false
				}
			}
		}
		if rest == "" {
			break
		}
		if rest[0] != ',' || len(rest) == 1 {
			return j, false
		}
		s = rest[1:]
	}
	return j, true
}

// cutString splits a leading "..." (without escapes) off s.
func cutString(s string) (str, rest string, ok bool) {
	if s == "" || s[0] != '"' {
		return "", s, false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", s, false
	}
	for i := 1; i <= end; i++ {
		if s[i] < 0x20 { // control characters must be escaped in JSON
			return "", s, false
		}
	}
	return s[1 : 1+end], s[2+end:], true
}
