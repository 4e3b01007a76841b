package apnsio_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
)

func TestBuildPayload(t *testing.T) {
	tests := []struct {
		name string
		in   pushflow.Notification
		want string
	}{
		{"title and body", pushflow.Notification{Title: "Goal", Body: "1-0"},
			`{"aps":{"alert":{"title":"Goal","body":"1-0"}}}`},
		{"body only", pushflow.Notification{Body: "1-0"},
			`{"aps":{"alert":{"body":"1-0"}}}`},
		{"title only", pushflow.Notification{Title: "Goal"},
			`{"aps":{"alert":{"title":"Goal"}}}`},
		{"sound", pushflow.Notification{Body: "b", Sound: "default"},
			`{"aps":{"alert":{"body":"b"},"sound":"default"}}`},
		{"badge", pushflow.Notification{Body: "b", Badge: 3, HasBadge: true},
			`{"aps":{"alert":{"body":"b"},"badge":3}}`},
		{"badge 0 clears", pushflow.Notification{Body: "b", Badge: 0, HasBadge: true},
			`{"aps":{"alert":{"body":"b"},"badge":0}}`},
		{"no badge", pushflow.Notification{Body: "b"},
			`{"aps":{"alert":{"body":"b"}}}`},
		{"non-zero badge without HasBadge", pushflow.Notification{Body: "b", Badge: 2},
			`{"aps":{"alert":{"body":"b"},"badge":2}}`},
		{"thread id", pushflow.Notification{Body: "b", ThreadID: "match-7"},
			`{"aps":{"alert":{"body":"b"},"thread-id":"match-7"}}`},
		{"mutable content", pushflow.Notification{Body: "b", MutableContent: true},
			`{"aps":{"alert":{"body":"b"},"mutable-content":1}}`},
		{"content available", pushflow.Notification{ContentAvailable: true},
			`{"aps":{"content-available":1}}`},
		{"data next to aps, keys in order", pushflow.Notification{Body: "b", Data: map[string]string{"url": "https://x/y", "a": "1"}},
			`{"a":"1","aps":{"alert":{"body":"b"}},"url":"https://x/y"}`},
		{"html escaped as on the wire, unicode kept", pushflow.Notification{Title: "<b>Tom & Jerry</b>", Body: "très \"bien\" 👍"},
			`{"aps":{"alert":{"title":"\u003cb\u003eTom \u0026 Jerry\u003c/b\u003e","body":"très \"bien\" 👍"}}}`},
		{"everything", pushflow.Notification{
			Title: "T", Body: "B", Sound: "ping.aiff", Badge: 1, HasBadge: true, ThreadID: "t",
			MutableContent: true, ContentAvailable: true, Data: map[string]string{"k": "v"},
			CollapseID: "ignored here", PushType: "alert",
		}, `{"aps":{"alert":{"title":"T","body":"B"},"badge":1,"sound":"ping.aiff","thread-id":"t","content-available":1,"mutable-content":1},"k":"v"}`},
		{"empty", pushflow.Notification{}, `{"aps":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := apnsio.BuildPayload(tt.in)
			if err != nil {
				t.Fatalf("BuildPayload(%+v) = %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("BuildPayload(%+v) = %s, want %s", tt.in, got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("BuildPayload(%+v) = %s, not valid JSON", tt.in, got)
			}
		})
	}
}

func TestBuildPayloadRejectsApsDataKey(t *testing.T) {
	in := pushflow.Notification{Body: "b", Data: map[string]string{"aps": "x"}}
	got, err := apnsio.BuildPayload(in)
	if !errors.Is(err, apnsio.ErrBadPayload) {
		t.Errorf("BuildPayload(%+v) = %s, %v, want error %v", in, got, err, apnsio.ErrBadPayload)
	}
}
