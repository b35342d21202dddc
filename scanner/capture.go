package scanner

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// State is what a capture is doing.
type State int

// States of a capture.
const (
	Opening State = iota // opening the device
	Running              // delivering frames
	Failed               // the device failed; waiting to reopen it
	Ended                // a file or folder came to its end
	Stopped              // stopped by its caller
)

func (s State) String() string {
	return [...]string{"opening", "running", "failed", "ended", "stopped"}[s]
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Status describes a capture for technicians: which device, in what state
// since when, and how it has fared.
type Status struct {
	Device   string    `json:"device"`
	Kind     string    `json:"kind"`
	State    State     `json:"state"`
	Since    time.Time `json:"since"`
	Error    string    `json:"error,omitempty"`
	Opens    int       `json:"opens"`
	Failures int       `json:"failures"`
	Frames   uint64    `json:"frames"`
}

// Backoff bounds between attempts to reopen a failed device.
const (
	MinBackoff = 250 * time.Millisecond
	MaxBackoff = 30 * time.Second
)

// capture reads frames from a device into a slot, reopening the device
// with exponential backoff (full jitter, capped) when it fails.
type capture struct {
	cfg   SourceConfig
	open  func(SourceConfig) (Source, error)
	clock clock.Clock
	log   *slog.Logger
	pace  float64 // frames a second for files and folders; 0: as fast as they read
	loop  bool    // start a file or folder again at its end

	mu     sync.Mutex
	status Status
}

func (c *capture) setStatus(edit func(*Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	edit(&c.status)
}

func (c *capture) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// run captures until ctx ends (it returns nil) or a finite source ends
// without loop (io.EOF).
func (c *capture) run(ctx context.Context, s *slot) error {
	kind := KindOf(c.cfg.Device)
	c.setStatus(func(st *Status) {
		*st = Status{Device: c.cfg.Device, Kind: kind.String(), State: Opening, Since: c.clock.Now()}
	})
	backoff := MinBackoff
	var seq uint64
	for {
		src, err := c.open(c.cfg)
		if err != nil {
			if !c.fail(ctx, err, &backoff) {
				return nil
			}
			continue
		}
		c.setStatus(func(st *Status) { st.Opens++; st.State, st.Since, st.Error = Running, c.clock.Now(), "" })
		c.log.Info("video source open", "device", c.cfg.Device, "kind", kind.String())
		err = c.read(ctx, src, s, &seq, &backoff, c.pace == 0 && (kind == File || kind == Folder))
		src.Close()
		switch {
		case ctx.Err() != nil:
			c.setStatus(func(st *Status) { st.State, st.Since = Stopped, c.clock.Now() })
			return nil
		case errors.Is(err, io.EOF) && c.loop:
			continue
		case errors.Is(err, io.EOF):
			c.setStatus(func(st *Status) { st.State, st.Since = Ended, c.clock.Now() })
			c.log.Info("video source ended", "device", c.cfg.Device)
			return io.EOF
		}
		if !c.fail(ctx, err, &backoff) {
			return nil
		}
	}
}

// fail records a failure, logs it with the device's name, and waits out
// the backoff. It reports whether to try again: false once ctx has ended,
// which the wait notices at once.
func (c *capture) fail(ctx context.Context, err error, backoff *time.Duration) bool {
	c.setStatus(func(st *Status) {
		st.Failures++
		st.State, st.Since, st.Error = Failed, c.clock.Now(), err.Error()
	})
	wait := time.Duration(rand.Int64N(int64(*backoff))) + 1
	c.log.Warn("video source failed; reopening", "device", c.cfg.Device, "err", err, "retry_in", wait)
	*backoff = min(2**backoff, MaxBackoff)
	select {
	case <-ctx.Done():
		c.setStatus(func(st *Status) { st.State, st.Since = Stopped, c.clock.Now() })
		return false
	case <-c.clock.After(wait):
		c.setStatus(func(st *Status) { st.State, st.Since = Opening, c.clock.Now() })
		return true
	}
}

// read delivers frames from one opened source until it fails or ends.
// With every set (a file or folder read as fast as it decodes) each frame
// waits for a worker instead of replacing the one waiting.
func (c *capture) read(ctx context.Context, src Source, s *slot, seq *uint64, backoff *time.Duration, every bool) error {
	start := c.clock.Now()
	var n int
	for ctx.Err() == nil {
		if c.pace > 0 {
			due := start.Add(time.Duration(float64(n) / c.pace * float64(time.Second)))
			if wait := due.Sub(c.clock.Now()); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-c.clock.After(wait):
				}
			}
		}
		buf := s.buffer()
		if err := src.Read(&buf); err != nil {
			s.release(buf)
			return err
		}
		n++
		*seq++
		*backoff = MinBackoff
		c.setStatus(func(st *Status) { st.Frames++ })
		s.put(Frame{Mat: buf, Seq: *seq, Captured: c.clock.Now()}, every)
	}
	return ctx.Err()
}

// OpenFunc opens a source; tests replace Open with a fake.
type OpenFunc func(SourceConfig) (Source, error)

var _ OpenFunc = Open
