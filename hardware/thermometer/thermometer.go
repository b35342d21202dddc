// Package thermometer reads infrared thermometers on a serial line and
// delivers their readings as hardware.Reading values, exactly as the
// device gave them: never corrected, compensated or rounded, and never
// judged (a value no person could have is the passage's business). The
// daemon imports it.
//
// Protocols (Config.Protocol):
//
//   - "line", the default: one reading a text line, a decimal number of
//     °C such as "36.5", ended by CR, LF or CRLF, with spaces around it
//     allowed.
//   - "pattern": one reading a text line, matched by Config.Pattern, a Go
//     regular expression with a named group body and optionally a named
//     group amb (the ambient temperature); examples below.
//   - "frame": binary frames of 7 bytes: the header 0xA5 0x5A; the body
//     temperature, an int16 big-endian in hundredths of °C; the ambient
//     temperature, the same, 0x7FFF for none; and a checksum, the sum of
//     the 6 bytes before it mod 256. After garbage or a bad checksum the
//     reader resynchronises on the next header.
//
// Patterns for devices that print "T=36.5C" and "BODY:36.5 AMB:21.0":
//
//	T=(?P<body>[0-9.]+)C
//	BODY:(?P<body>\S+)(?: AMB:(?P<amb>\S+))?
//
// A text line longer than 256 bytes, a line that is not a reading, and
// bytes that are not a frame are garbage; part of a line or frame cut off
// by a reopen is a partial. Both are counted (Status) and dropped. No
// bytes for Config.Silence counts a silence, which lasts until data comes
// again. Of each of the three the log gets the first, then at most one
// line a minute with the count since the last.
//
// Devices that measure only when asked get Config.Query written by
// Measure. Run reopens a port that fails, with backoff.
package thermometer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/hardware/internal/devio"
	"github.com/checkpointd/checkpoint/internal/clock"
)

// Config describes one thermometer.
type Config struct {
	Name     string        // the Source of its readings, e.g. "lane-1/thermometer"
	Port     string        // the serial device, e.g. /dev/ttyUSB0
	Baud     int           // 0: 9600
	Protocol string        // "line" (default), "pattern" or "frame"
	Pattern  string        // "pattern": a regexp with (?P<body>...) and optionally (?P<amb>...)
	Query    string        // bytes Measure writes to ask for a reading; empty: the device measures on its own
	Silence  time.Duration // no bytes for this long counts a silence; 0: 30 s
}

// Default settings.
const (
	DefaultBaud    = 9600
	DefaultSilence = 30 * time.Second
)

// Opener opens a serial port at a baud rate. OpenSerial opens real ports;
// tests pass fakes.
type Opener func(port string, baud int) (io.ReadWriteCloser, error)

// OpenSerial opens a serial port (or a pseudo-terminal's slave) at baud,
// 8N1, raw.
func OpenSerial(port string, baud int) (io.ReadWriteCloser, error) {
	return devio.OpenSerial(port, baud)
}

// Status tells a technician and the metrics how a thermometer fares.
type Status struct {
	Name     string    `json:"name"`
	Port     string    `json:"port"`
	Up       bool      `json:"up"`    // the port is open
	Since    time.Time `json:"since"` // when Up last changed
	Readings uint64    `json:"readings"`
	Garbage  uint64    `json:"garbage"`
	Partial  uint64    `json:"partial"`
	Silences uint64    `json:"silences"`
	Opens    uint64    `json:"opens"`
	Failures uint64    `json:"failures"` // failed opens and ports that failed
	Error    string    `json:"error,omitempty"`
}

// ErrNotOpen is returned by Measure while the port is not open.
var ErrNotOpen = errors.New("port not open")

// Thermometer reads one thermometer. Run reads; Status and Measure may be
// called from any goroutine.
type Thermometer struct {
	cfg     Config
	pattern *pattern // protocol "pattern"
	open    Opener
	clk     clock.Clock
	log     *slog.Logger

	mu     sync.Mutex
	status Status

	// What Run has logged of each kind of bad input; Run's alone.
	garbageLog, partialLog, silenceLog devio.Tally

	portMu sync.Mutex
	port   io.ReadWriteCloser // while open, for Measure
}

// New checks cfg and returns a thermometer that opens its port with open.
// A nil log discards.
func New(cfg Config, open Opener, clk clock.Clock, log *slog.Logger) (*Thermometer, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("thermometer: no name")
	case cfg.Port == "":
		return nil, fmt.Errorf("thermometer %s: no port", cfg.Name)
	case cfg.Baud < 0:
		return nil, fmt.Errorf("thermometer %s: baud %d", cfg.Name, cfg.Baud)
	case cfg.Silence < 0:
		return nil, fmt.Errorf("thermometer %s: silence %v", cfg.Name, cfg.Silence)
	case cfg.Pattern != "" && cfg.Protocol != "pattern":
		return nil, fmt.Errorf("thermometer %s: a pattern needs protocol \"pattern\"", cfg.Name)
	}
	if cfg.Baud == 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.Silence == 0 {
		cfg.Silence = DefaultSilence
	}
	var pat *pattern
	switch cfg.Protocol {
	case "":
		cfg.Protocol = "line"
	case "line", "frame":
	case "pattern":
		re, err := regexp.Compile(cfg.Pattern)
		if err != nil {
			return nil, fmt.Errorf("thermometer %s: pattern: %w", cfg.Name, err)
		}
		pat = &pattern{re: re, body: re.SubexpIndex("body"), amb: re.SubexpIndex("amb")}
		if pat.body < 0 {
			return nil, fmt.Errorf("thermometer %s: pattern: missing (?P<body>...) group", cfg.Name)
		}
	default:
		return nil, fmt.Errorf("thermometer %s: unknown protocol %q (want line, pattern or frame)", cfg.Name, cfg.Protocol)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Thermometer{
		cfg:     cfg,
		pattern: pat,
		open:    open,
		clk:     clk,
		log:     log.With("component", "thermometer", "name", cfg.Name, "port", cfg.Port),
		status:  Status{Name: cfg.Name, Port: cfg.Port, Since: clk.Now()},
	}, nil
}

// Status returns the thermometer's state and counts.
func (t *Thermometer) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

func (t *Thermometer) setStatus(edit func(*Status)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	edit(&t.status)
}

// Measure writes Config.Query to ask the device for a reading; the
// reading comes through Run. Without a Query it does nothing. It fails
// with ErrNotOpen while the port is not open.
func (t *Thermometer) Measure() error {
	if t.cfg.Query == "" {
		return nil
	}
	t.portMu.Lock()
	defer t.portMu.Unlock()
	if t.port == nil {
		return fmt.Errorf("thermometer %s: %w", t.cfg.Name, ErrNotOpen)
	}
	if _, err := io.WriteString(t.port, t.cfg.Query); err != nil {
		return fmt.Errorf("thermometer %s: query: %w", t.cfg.Name, err)
	}
	return nil
}

// Run reads the thermometer and sends its readings to out until ctx ends,
// then returns nil. A port that cannot be opened or fails is reopened
// after a wait of backoff (devio.MinBackoff to MaxBackoff, with jitter,
// from the start again after a good reading); ctx ends the wait, and a
// blocked read, at once. Run is not to be called twice at a time.
func (t *Thermometer) Run(ctx context.Context, out chan<- hardware.Reading) error {
	var backoff devio.Backoff
	for ctx.Err() == nil {
		port, err := t.open(t.cfg.Port, t.cfg.Baud)
		if err == nil {
			err = t.serve(ctx, port, out, &backoff)
		}
		if ctx.Err() != nil {
			break
		}
		wait := backoff.Next()
		t.setStatus(func(st *Status) {
			st.Failures++
			st.Up, st.Since, st.Error = false, t.clk.Now(), err.Error()
		})
		t.log.Warn("thermometer failed; reopening", "err", err, "retry_in", wait)
		if !devio.Sleep(ctx, t.clk, wait) {
			break
		}
	}
	t.setStatus(func(st *Status) {
		if st.Up {
			st.Up, st.Since = false, t.clk.Now()
		}
	})
	return nil
}

// serve reads one opened port until it fails or ctx ends, and closes it.
func (t *Thermometer) serve(ctx context.Context, port io.ReadWriteCloser, out chan<- hardware.Reading, backoff *devio.Backoff) error {
	t.portMu.Lock()
	t.port = port
	t.portMu.Unlock()
	stop := make(chan struct{})
	defer func() {
		close(stop)
		t.portMu.Lock()
		t.port = nil
		t.portMu.Unlock()
		port.Close() // ends the read in ReadChunks
	}()
	t.setStatus(func(st *Status) {
		st.Opens++
		st.Up, st.Since, st.Error = true, t.clk.Now(), ""
	})
	t.log.Info("thermometer open")

	dec := t.decoder()
	chunks := devio.ReadChunks(port, stop)
	lastData := t.clk.Now()
	silence := t.clk.After(t.cfg.Silence) // nil while silent: no use waking up
	var got []value
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()

		case now := <-silence:
			if quiet := now.Sub(lastData); quiet < t.cfg.Silence {
				silence = t.clk.After(t.cfg.Silence - quiet)
				continue
			}
			silence = nil
			t.setStatus(func(st *Status) { st.Silences++ })
			if n, ok := t.silenceLog.Add(now); ok {
				t.log.Info("thermometer silent", "for", t.cfg.Silence, "count", n)
			}

		case c := <-chunks:
			if c.Err != nil {
				if dec.pending() {
					t.setStatus(func(st *Status) { st.Partial++ })
					if n, ok := t.partialLog.Add(t.clk.Now()); ok {
						t.log.Info("thermometer: partial reading dropped", "count", n)
					}
				}
				return fmt.Errorf("read: %w", c.Err)
			}
			now := t.clk.Now()
			lastData = now
			if silence == nil {
				silence = t.clk.After(t.cfg.Silence)
			}
			got = got[:0]
			bad := 0
			dec.feed(c.Data, func(v value, ok bool) {
				if ok {
					got = append(got, v)
				} else {
					bad++
				}
			})
			if bad > 0 {
				t.setStatus(func(st *Status) { st.Garbage += uint64(bad) })
			}
			for range bad {
				if n, ok := t.garbageLog.Add(now); ok {
					t.log.Warn("thermometer: garbage dropped", "count", n)
				}
			}
			for _, v := range got {
				backoff.Reset()
				t.setStatus(func(st *Status) { st.Readings++ })
				r := hardware.Reading{Body: v.body, Ambient: v.amb, HasAmbient: v.hasAmb, Source: t.cfg.Name, At: now}
				select {
				case out <- r:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
	}
}

// decoder returns a new decoder of the configured protocol.
func (t *Thermometer) decoder() decoder {
	switch t.cfg.Protocol {
	case "pattern":
		return newLineDecoder(t.pattern.parse)
	case "frame":
		return &frameDecoder{}
	default:
		return newLineDecoder(parseNumber)
	}
}
