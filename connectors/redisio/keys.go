package redisio

import (
	"strconv"
	"strings"
)

// keys builds every Redis key the registry uses. It is pure, so the layout
// is table-tested without a server. LAYOUT.md explains each key.
type keys struct {
	prefix string
}

// escaper makes every identifier safe to embed in a key: ':' separates key
// parts and '{' '}' delimit the cluster hash tag, so an identifier never
// contains them, and two different identifier tuples never build the same
// key. Identifiers without these characters (all real app ids, and nearly
// all user and device ids) are embedded unchanged.
var escaper = strings.NewReplacer("%", "%25", ":", "%3A", "{", "%7B", "}", "%7D")

func esc(s string) string {
	if !strings.ContainsAny(s, "%:{}") {
		return s
	}
	return escaper.Replace(s)
}

// userTag is the cluster hash tag shared by all keys of one user of one app,
// so that a script may update them atomically.
func userTag(app, user string) string {
	return "{" + esc(app) + ":" + esc(user) + "}"
}

// userDevices is the hash device id → compact device JSON of one user.
func (k keys) userDevices(app, user string) string {
	return k.prefix + "u:" + userTag(app, user) + ":devices"
}

// userTags is the set of tags of one user.
func (k keys) userTags(app, user string) string {
	return k.prefix + "u:" + userTag(app, user) + ":tags"
}

// userSettings is the JSON settings of one user.
func (k keys) userSettings(app, user string) string {
	return k.prefix + "u:" + userTag(app, user) + ":settings"
}

// userInterest is the hash category → interest score of one user.
func (k keys) userInterest(app, user string) string {
	return k.prefix + "u:" + userTag(app, user) + ":interest"
}

// frequency is the counter of notifications sent to one user on one day in
// one category.
func (k keys) frequency(app, user, day, category string) string {
	return k.prefix + "u:" + userTag(app, user) + ":freq:" + esc(day) + ":" + esc(category)
}

// device is the device record hash: user, token, platform, topic,
// updated_at and one "alias:<type>" field per alias.
func (k keys) device(app, device string) string {
	return k.prefix + "d:{" + esc(app) + ":" + esc(device) + "}"
}

// alias is the set of device ids holding one alias value.
func (k keys) alias(app, typ, value string) string {
	return k.prefix + "alias:" + esc(app) + ":" + esc(typ) + ":" + esc(value)
}

// tag is the set of users holding one tag.
func (k keys) tag(app, tag string) string {
	return k.prefix + "tag:" + esc(app) + ":" + esc(tag)
}

// users is the set of users of an app that have registered a device.
func (k keys) users(app string) string {
	return k.prefix + "users:" + esc(app)
}

// dedup is the claim marker of one caller-chosen dedup key.
func (k keys) dedup(key string) string {
	return k.prefix + "dedup:" + key
}

// paceBacklog is the hash campaign → recipients pending in one pacing shard
// of one paced lane, as last reported by that shard's pacer.
func (k keys) paceBacklog(lane string, shard int) string {
	return k.prefix + "pace:" + esc(lane) + ":" + strconv.Itoa(shard)
}
