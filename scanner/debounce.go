package scanner

import (
	"sync"
	"time"
)

// debouncer turns per-frame reads into scan events: a code held in front
// of the camera for many frames is one event, and it is not an event again
// until it has been out of view for the forget time. A different code is
// an event at once. Times are capture times, so the outcome does not
// depend on how fast the frames were decoded.
type debouncer struct {
	forget time.Duration
	mu     sync.Mutex
	last   map[string]time.Time // text -> last capture time it was read at
}

func newDebouncer(forget time.Duration) *debouncer {
	return &debouncer{forget: forget, last: make(map[string]time.Time)}
}

// seen records a read of text at captured and reports whether it is a
// new event.
func (d *debouncer) seen(text string, captured time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	last, ok := d.last[text]
	if captured.After(last) {
		d.last[text] = captured
	}
	if ok && captured.Sub(last) <= d.forget {
		return false
	}
	// Forget codes gone for longer than the forget time, so the map
	// holds only what is in view or just left it.
	for t, at := range d.last {
		if captured.Sub(at) > d.forget {
			delete(d.last, t)
		}
	}
	return true
}
