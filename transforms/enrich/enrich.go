// Package enrich resolves recipients to their devices and provider tokens
// from the Redis device registry, one pipelined read per batch. A user with
// no registered device, or a device without a token, leaves as a "dropped"
// DeliveryEvent at stage "enrich".
package enrich

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn4x1[context.Context, recipient.Batch, func(recipient.Batch), func(pushflow.DeliveryEvent), error](&tokensFn{})
}

// Tokens enriches PCollection<recipient.Batch> of users (or of devices whose
// owner is known) into PCollection<recipient.Batch> of devices with tokens,
// and PCollection<pushflow.DeliveryEvent> of recipients with no device.
func Tokens(s beam.Scope, batches beam.PCollection, redisAddr string) (enriched, events beam.PCollection) {
	s = s.Scope("enrich.Tokens")
	if redisAddr == "" {
		panic("enrich.Tokens: redisAddr is required")
	}
	return beam.ParDo2(s, &tokensFn{RedisAddr: redisAddr}, batches)
}

var (
	enrichedDevices = beam.NewCounter("pushflow", "enrich_devices")
	enrichDrops     = beam.NewCounter("pushflow", "enrich_dropped")
)

type tokensFn struct {
	RedisAddr string

	reg *redisio.Registry
}

func (fn *tokensFn) Setup() {
	fn.reg = redisio.Open(fn.RedisAddr)
}

func (fn *tokensFn) Teardown() {
	fn.reg.Close()
}

func (fn *tokensFn) ProcessElement(ctx context.Context, b recipient.Batch, emit func(recipient.Batch), events func(pushflow.DeliveryEvent)) error {
	app := b.Request.Req.App
	var users, deviceIDs []string
	for _, r := range b.Recipients {
		if r.DeviceID != "" {
			deviceIDs = append(deviceIDs, r.DeviceID)
		} else {
			users = append(users, r.UserID)
		}
	}
	var byUser map[string][]redisio.Device
	var byID map[string]redisio.Device
	var err error
	if len(users) > 0 {
		if byUser, err = fn.reg.UserDevices(ctx, app, users); err != nil {
			return fmt.Errorf("enrich: %s: %w", b.Request.Req.ID, err)
		}
	}
	if len(deviceIDs) > 0 {
		if byID, err = fn.reg.Devices(ctx, app, deviceIDs); err != nil {
			return fmt.Errorf("enrich: %s: %w", b.Request.Req.ID, err)
		}
	}
	now := time.Now()
	out := make([]recipient.Recipient, 0, len(b.Recipients))
	drop := func(r recipient.Recipient, reason string) {
		enrichDrops.Inc(ctx, 1)
		events(b.Event(now, r, pushflow.StageEnrich, pushflow.OutcomeDropped, reason))
	}
	add := func(r recipient.Recipient, d redisio.Device) {
		// A device that changed owner since expansion belongs to its new
		// owner: record the event under the user who holds the token.
		if d.UserID != "" {
			r.UserID = d.UserID
		}
		r.DeviceID, r.Platform, r.Token, r.Topic = d.ID, d.Platform, d.Token, d.Topic
		if d.Token == "" {
			drop(r, pushflow.ReasonNoToken)
			return
		}
		out = append(out, r)
	}
	for _, r := range b.Recipients {
		if r.DeviceID != "" {
			d, ok := byID[r.DeviceID]
			if !ok { // unregistered between expansion and now
				drop(r, pushflow.ReasonNoDevice)
				continue
			}
			add(r, d)
			continue
		}
		devs := byUser[r.UserID]
		if len(devs) == 0 {
			drop(r, pushflow.ReasonNoDevice)
			continue
		}
		for _, d := range devs {
			add(r, d)
		}
	}
	enrichedDevices.Inc(ctx, int64(len(out)))
	if len(out) > 0 {
		emit(b.With(out))
	}
	return nil
}
