package apnsio

import (
	"encoding/json"
	"fmt"

	"github.com/pushflow/pushflow"
)

// aps is the "aps" dictionary of an APNs payload.
type aps struct {
	Alert            *alert `json:"alert,omitempty"`
	Badge            *int   `json:"badge,omitempty"`
	Sound            string `json:"sound,omitempty"`
	ThreadID         string `json:"thread-id,omitempty"`
	ContentAvailable int    `json:"content-available,omitempty"`
	MutableContent   int    `json:"mutable-content,omitempty"`
}

type alert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// BuildPayload maps n to the JSON payload APNs delivers:
//
//	{"aps":{"alert":{"title":..,"body":..},"badge":1,"sound":"default","thread-id":..,
//	        "content-available":1,"mutable-content":1},"<data key>":"<value>",...}
//
// Fields that are unset are left out: the alert without a title or body, the
// badge unless n.HasBadge (or n.Badge is non-zero; badge 0 with HasBadge
// clears the badge). Data keys sit next to "aps" at the top level; a data key
// "aps" is rejected with ErrBadPayload. The output is deterministic (keys in
// order) and escapes <, > and & as encoding/json does: apns2 re-encodes the
// payload with json.Marshal, so these are the bytes on the wire, and the size
// checked is the size sent.
func BuildPayload(n pushflow.Notification) ([]byte, error) {
	if _, ok := n.Data["aps"]; ok {
		return nil, fmt.Errorf("apnsio: data key \"aps\" is reserved: %w", ErrBadPayload)
	}
	a := aps{
		Sound:    n.Sound,
		ThreadID: n.ThreadID,
	}
	if n.Title != "" || n.Body != "" {
		a.Alert = &alert{Title: n.Title, Body: n.Body}
	}
	if n.HasBadge || n.Badge != 0 {
		a.Badge = &n.Badge
	}
	if n.ContentAvailable {
		a.ContentAvailable = 1
	}
	if n.MutableContent {
		a.MutableContent = 1
	}

	top := make(map[string]any, len(n.Data)+1)
	for k, v := range n.Data {
		top[k] = v
	}
	top["aps"] = a

	p, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("apnsio: encode payload: %w", err)
	}
	return p, nil
}
