// Package lines reads ID-card readers and handheld QR scanners that send
// one line of text per read (an ID number, the text of a code), on a
// serial line or as a USB keyboard, and delivers them as hardware.Line
// values. The daemon imports it.
//
// Kinds (Config.Kind):
//
//   - "serial": text lines ended by CR, LF or CRLF on a serial port.
//   - "evdev": a keyboard-wedge device read from its Linux input device
//     (/dev/input/eventN), grabbed so that its keystrokes reach no console.
//     Key presses are translated with a US layout (shift gives upper case
//     and the shifted signs; the keypad types digits and . * - + /), and
//     Enter or keypad Enter ends the line. A line with a key that types no
//     character is garbage.
//
// Empty lines are left out; a line longer than 4096 bytes is garbage, and
// part of a line cut off by a reopen is a partial: both are counted
// (Status) and dropped, and of each the log gets the first, then at most
// one line a minute with the count since the last. The text of a line is
// personal data: it is never logged, only counted. Run reopens a device
// that fails, with backoff.
package lines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/hardware/internal/devio"
	"github.com/checkpointd/checkpoint/internal/clock"
)

// MaxLine is the longest line delivered, in bytes; the text of a QR code
// is at most about 2 KB.
const MaxLine = 4096

// Config describes one line device.
type Config struct {
	Name   string // the Source of its lines, e.g. "lane-1/id-reader"
	Kind   string // "serial" or "evdev"
	Device string // e.g. /dev/ttyUSB1 or /dev/input/by-id/usb-…-event-kbd
	Baud   int    // serial: 0: 9600
	Grab   bool   // evdev: take the device for this reader alone (the caller's default is true)
}

// Opener opens a device (a baud rate is for serial ports). DeviceOpener
// gives the one for real devices; tests pass fakes.
type Opener func(device string, baud int) (io.ReadCloser, error)

// DeviceOpener returns the opener of cfg's real device: OpenSerial, or
// OpenEvdev grabbing the device if cfg.Grab.
func DeviceOpener(cfg Config) Opener {
	if cfg.Kind == "evdev" {
		return func(device string, _ int) (io.ReadCloser, error) { return OpenEvdev(device, cfg.Grab) }
	}
	return OpenSerial
}

// OpenSerial opens a serial port (or a pseudo-terminal's slave) at baud,
// 8N1, raw.
func OpenSerial(device string, baud int) (io.ReadCloser, error) {
	return devio.OpenSerial(device, baud)
}

// Status tells a technician and the metrics how a line device fares.
type Status struct {
	Name     string    `json:"name"`
	Device   string    `json:"device"`
	Kind     string    `json:"kind"`
	Up       bool      `json:"up"`    // the device is open
	Since    time.Time `json:"since"` // when Up last changed
	Lines    uint64    `json:"lines"`
	Garbage  uint64    `json:"garbage"`
	Partial  uint64    `json:"partial"`
	Opens    uint64    `json:"opens"`
	Failures uint64    `json:"failures"` // failed opens and devices that failed
	Error    string    `json:"error,omitempty"`
}

// Reader reads one line device. Run reads; Status may be called from any
// goroutine.
type Reader struct {
	cfg  Config
	open Opener
	clk  clock.Clock
	log  *slog.Logger

	mu     sync.Mutex
	status Status

	// What Run has logged of each kind of bad input; Run's alone.
	garbageLog, partialLog devio.Tally
}

// New checks cfg and returns a reader that opens its device with open. A
// nil log discards.
func New(cfg Config, open Opener, clk clock.Clock, log *slog.Logger) (*Reader, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("line reader: no name")
	case cfg.Kind != "serial" && cfg.Kind != "evdev":
		return nil, fmt.Errorf("line reader %s: unknown kind %q (want serial or evdev)", cfg.Name, cfg.Kind)
	case cfg.Device == "":
		return nil, fmt.Errorf("line reader %s: no device", cfg.Name)
	case cfg.Baud < 0:
		return nil, fmt.Errorf("line reader %s: baud %d", cfg.Name, cfg.Baud)
	}
	if cfg.Kind == "serial" && cfg.Baud == 0 {
		cfg.Baud = 9600
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reader{
		cfg:    cfg,
		open:   open,
		clk:    clk,
		log:    log.With("component", "lines", "name", cfg.Name, "device", cfg.Device),
		status: Status{Name: cfg.Name, Device: cfg.Device, Kind: cfg.Kind, Since: clk.Now()},
	}, nil
}

// Status returns the reader's state and counts.
func (r *Reader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Reader) setStatus(edit func(*Status)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	edit(&r.status)
}

// Run reads the device and sends its lines to out until ctx ends, then
// returns nil. A device that cannot be opened or fails is reopened after
// a wait of backoff (devio.MinBackoff to MaxBackoff, with jitter, from the
// start again after a good line); ctx ends the wait, and a blocked read,
// at once. Run is not to be called twice at a time.
func (r *Reader) Run(ctx context.Context, out chan<- hardware.Line) error {
	var backoff devio.Backoff
	for ctx.Err() == nil {
		dev, err := r.open(r.cfg.Device, r.cfg.Baud)
		if err == nil {
			err = r.serve(ctx, dev, out, &backoff)
		}
		if ctx.Err() != nil {
			break
		}
		wait := backoff.Next()
		r.setStatus(func(st *Status) {
			st.Failures++
			st.Up, st.Since, st.Error = false, r.clk.Now(), err.Error()
		})
		r.log.Warn("line reader failed; reopening", "err", err, "retry_in", wait)
		if !devio.Sleep(ctx, r.clk, wait) {
			break
		}
	}
	r.setStatus(func(st *Status) {
		if st.Up {
			st.Up, st.Since = false, r.clk.Now()
		}
	})
	return nil
}

// serve reads one opened device until it fails or ctx ends, and closes it.
func (r *Reader) serve(ctx context.Context, dev io.ReadCloser, out chan<- hardware.Line, backoff *devio.Backoff) error {
	stop := make(chan struct{})
	defer func() {
		close(stop)
		dev.Close() // ends the read in ReadChunks
	}()
	r.setStatus(func(st *Status) {
		st.Opens++
		st.Up, st.Since, st.Error = true, r.clk.Now(), ""
	})
	r.log.Info("line reader open", "kind", r.cfg.Kind)

	var dec decoder = &serialDecoder{split: devio.Splitter{Max: MaxLine}}
	if r.cfg.Kind == "evdev" {
		dec = &keyDecoder{}
	}
	chunks := devio.ReadChunks(dev, stop)
	var got []string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-chunks:
			if c.Err != nil {
				if dec.pending() {
					r.setStatus(func(st *Status) { st.Partial++ })
					if n, ok := r.partialLog.Add(r.clk.Now()); ok {
						r.log.Info("line reader: partial line dropped", "count", n)
					}
				}
				return fmt.Errorf("read: %w", c.Err)
			}
			now := r.clk.Now()
			got = got[:0]
			bad := 0
			dec.feed(c.Data, func(line []byte, ok bool) {
				if ok {
					got = append(got, string(line))
				} else {
					bad++
				}
			})
			if bad > 0 {
				r.setStatus(func(st *Status) { st.Garbage += uint64(bad) })
			}
			for range bad {
				if n, ok := r.garbageLog.Add(now); ok {
					r.log.Warn("line reader: garbage dropped", "count", n)
				}
			}
			for _, text := range got {
				backoff.Reset()
				r.setStatus(func(st *Status) { st.Lines++ })
				select {
				case out <- hardware.Line{Text: text, Source: r.cfg.Name, At: now}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
	}
}

// decoder turns a device's bytes into lines.
type decoder interface {
	// feed parses p and calls emit with each line (valid only during the
	// call), in order, or with ok false for each piece of garbage.
	feed(p []byte, emit func(line []byte, ok bool))
	// pending reports whether part of a line has been read.
	pending() bool
}

// serialDecoder reads text lines.
type serialDecoder struct {
	split devio.Splitter
}

func (d *serialDecoder) feed(p []byte, emit func([]byte, bool)) { d.split.Split(p, emit) }

func (d *serialDecoder) pending() bool { return d.split.Pending() > 0 }
