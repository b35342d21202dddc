// Package devio holds what the drivers of byte-stream devices share:
// opening a serial port, the backoff between reopens, reading in the
// background so that a context can end a blocked read, cutting text into
// lines of bounded length, and counting bad input for a log that does not
// flood. hardware/thermometer and hardware/lines import it.
package devio

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"go.bug.st/serial"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// OpenSerial opens a serial port, or the slave side of a pseudo-terminal,
// at baud (0: 9600), 8 data bits, no parity, one stop bit, raw, without
// flow control. Closing the port ends a read blocked on it.
func OpenSerial(port string, baud int) (io.ReadWriteCloser, error) {
	if baud == 0 {
		baud = 9600
	}
	p, err := serial.Open(port, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", port, err)
	}
	return p, nil
}

// Bounds of the wait before reopening a device that failed.
const (
	MinBackoff = 250 * time.Millisecond
	MaxBackoff = 30 * time.Second
)

// Backoff is the wait before reopening a device: a step doubling from
// MinBackoff to MaxBackoff, with full jitter. The zero value starts at
// MinBackoff. It is not safe for concurrent use.
type Backoff struct {
	step time.Duration
}

// Next returns a random wait in (0, step] and doubles the step.
func (b *Backoff) Next() time.Duration {
	if b.step == 0 {
		b.step = MinBackoff
	}
	wait := time.Duration(rand.Int64N(int64(b.step))) + 1
	b.step = min(2*b.step, MaxBackoff)
	return wait
}

// Reset starts the steps again from MinBackoff, after good data.
func (b *Backoff) Reset() { b.step = MinBackoff }

// Sleep waits d on clk. It returns false once ctx has ended, at once: a
// caller that tried again instead would spin.
func Sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-clk.After(d):
		return ctx.Err() == nil
	}
}

// Chunk is what one read returned: data, or the error that ended reading.
type Chunk struct {
	Data []byte
	Err  error
}

// readSize is the most one read asks for: more than a line of a
// thermometer, 21 key events of a keyboard on a 64-bit machine.
const readSize = 512

// ReadChunks reads r in a goroutine and sends what each read returns; the
// last chunk carries the error that ended reading. A read that returns
// nothing and no error ends reading as io.EOF (a hung-up device), so that
// a broken device cannot make it spin. The goroutine ends after the error,
// or when stop is closed; the caller closes r to end a read that blocks.
func ReadChunks(r io.Reader, stop <-chan struct{}) <-chan Chunk {
	c := make(chan Chunk)
	go func() {
		for {
			buf := make([]byte, readSize)
			n, err := r.Read(buf)
			if n == 0 && err == nil {
				err = io.EOF
			}
			if n > 0 {
				select {
				case c <- Chunk{Data: buf[:n]}:
				case <-stop:
					return
				}
			}
			if err != nil {
				select {
				case c <- Chunk{Err: err}:
				case <-stop:
				}
				return
			}
		}
	}()
	return c
}

// Splitter cuts a byte stream into lines ended by CR, LF or CRLF, leaving
// out empty lines. A line longer than Max bytes is reported once, when it
// passes Max, and skipped up to its end: memory stays bounded by Max. It
// is not safe for concurrent use.
type Splitter struct {
	Max  int
	line []byte
	long bool // inside a line already reported as too long
}

// Split feeds p in. emit gets each complete line, without its ending and
// valid only during the call, with ok true; or nil and false for a line
// too long.
func (s *Splitter) Split(p []byte, emit func(line []byte, ok bool)) {
	for _, b := range p {
		switch {
		case b == '\r' || b == '\n':
			if len(s.line) > 0 {
				emit(s.line, true)
			}
			s.line, s.long = s.line[:0], false
		case s.long:
		case len(s.line) >= s.Max:
			emit(nil, false)
			s.line, s.long = s.line[:0], true
		default:
			s.line = append(s.line, b)
		}
	}
}

// Pending returns how many bytes of an unfinished line it holds.
func (s *Splitter) Pending() int { return len(s.line) }

// logEvery is the least time between two logs of one kind of bad input.
const logEvery = time.Minute

// Tally counts one kind of bad input (garbage, partial lines, silences)
// for the log: the first is logged, then at most one summary a minute,
// when the next one comes. The zero value is ready. It is not safe for
// concurrent use.
type Tally struct {
	last time.Time
	n    uint64
}

// Add counts one at now. It reports whether to log now and, if so, how
// many came since the last log, this one included. A clock stepped back
// behind the last log lets the next one be logged.
func (t *Tally) Add(now time.Time) (n uint64, log bool) {
	t.n++
	if !t.last.IsZero() && !now.Before(t.last) && now.Sub(t.last) < logEvery {
		return 0, false
	}
	n, t.n, t.last = t.n, 0, now
	return n, true
}
