package verify

import (
	"sync"
	"time"
)

// ReplayCache remembers what a checkpoint has seen in the last minutes, so
// that a copy of a code shown again is refused while a person standing still
// in front of the camera is not.
//
// Phones sign a new presentation every 5 seconds, so:
//   - the same presentation seen again within the policy's RepeatGrace is the
//     same screen still in view: a repeat, decided like the first sighting
//     and marked Repeat so that the gate does not count a second passage;
//   - the same presentation seen again later, while it is still fresh, is a
//     copy (a photo, a screenshot, a relay): replayed, refused;
//   - a new presentation of a credential seen within RepeatGrace is the
//     phone refreshing its code while its holder waits: a repeat too.
//
// Entries are dropped once the presentation they remember can no longer be
// fresh, and the cache never holds more than its capacity. It is safe for
// concurrent use. The time it goes by is the one each request brings.
type ReplayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[[32]byte]time.Time // presentation fingerprint -> first sighting
	last  map[string]time.Time   // credential (key id and id) -> last sighting
	queue []sighting             // in order of insertion
	head  int
}

type sighting struct {
	fp   [32]byte
	cred string
	at   time.Time
}

// NewReplayCache returns a cache holding at most capacity sightings. A lane
// sees about one person every two seconds, so a few thousand cover the
// presentation window many times over.
func NewReplayCache(capacity int) *ReplayCache {
	if capacity < 1 {
		capacity = 1
	}
	return &ReplayCache{
		max:  capacity,
		seen: make(map[[32]byte]time.Time),
		last: make(map[string]time.Time),
	}
}

// Len returns the number of sightings held.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) - c.head
}

// observe records a sighting and classifies it. Presentations are checked
// for replay (checkReplay); static codes are only checked for repeats.
func (c *ReplayCache) observe(fp [32]byte, cred string, now time.Time, p Policy, checkReplay bool) (repeat, replayed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	grace := time.Duration(p.RepeatGrace)
	horizon := time.Duration(p.PresentationWindow+2*p.ClockSkew+2*p.MaxClockUncertainty) + grace
	c.expire(now.Add(-horizon))

	first, seenBefore := c.seen[fp]
	switch {
	case seenBefore && checkReplay && within(now.Sub(first), grace):
		repeat = true
	case seenBefore && checkReplay:
		replayed = true
	default:
		if lastSeen, ok := c.last[cred]; ok && within(now.Sub(lastSeen), grace) {
			repeat = true
		}
	}
	if !seenBefore {
		c.seen[fp] = now
	}
	c.last[cred] = now
	c.queue = append(c.queue, sighting{fp: fp, cred: cred, at: now})
	for len(c.queue)-c.head > c.max {
		c.pop()
	}
	return repeat, replayed
}

func within(d, grace time.Duration) bool { return d >= -grace && d <= grace }

// expire drops sightings older than cutoff.
func (c *ReplayCache) expire(cutoff time.Time) {
	for c.head < len(c.queue) && c.queue[c.head].at.Before(cutoff) {
		c.pop()
	}
}

func (c *ReplayCache) pop() {
	s := c.queue[c.head]
	c.queue[c.head] = sighting{}
	c.head++
	if t, ok := c.seen[s.fp]; ok && !t.After(s.at) {
		delete(c.seen, s.fp)
	}
	if t, ok := c.last[s.cred]; ok && !t.After(s.at) {
		delete(c.last, s.cred)
	}
	if c.head > len(c.queue)/2 && c.head > 64 {
		c.queue = append(c.queue[:0], c.queue[c.head:]...)
		c.head = 0
	}
}
