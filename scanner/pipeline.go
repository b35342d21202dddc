package scanner

import (
	"context"
	"errors"
	"image"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// ScanEvent is a code that came into view.
type ScanEvent struct {
	Text     string
	Seq      uint64    // the frame it was read from
	Captured time.Time // when that frame was captured
	Decoded  time.Time // when decoding it finished
	Corners  [4]image.Point
	Module   float64 // pixels per module: small values mean a distant or tiny code
	Errors   int     // Reed-Solomon corrections: 0 is a clean read
	Stage    string  // the cascade stage that read it
}

// Config configures a Pipeline.
type Config struct {
	Source SourceConfig
	// Workers decoding in parallel; 0 means one per CPU.
	Workers int
	Decoder DecoderOptions
	// Forget is how long a code must be out of view before it is read
	// again as a new event; 0 means 3 seconds.
	Forget time.Duration
	// Pace delivers a file's or folder's frames at this many a second, as a
	// camera would, dropping what the workers cannot keep up with; 0 reads
	// them as fast as they decode, dropping none.
	Pace float64
	// Loop starts a file or folder again at its end.
	Loop bool
}

// Stats counts what a pipeline has done.
type Stats struct {
	Captured  uint64 `json:"captured"`
	Processed uint64 `json:"processed"`
	Dropped   uint64 `json:"dropped"` // frames replaced before a worker took them
	Reads     uint64 `json:"reads"`   // codes read, before debouncing
	Events    uint64 `json:"events"`
	Buffers   int    `json:"buffers"` // frame buffers allocated now
	// Latency from capture to the end of decoding, over the last frames
	// processed.
	LatencyP50 time.Duration `json:"latency_p50"`
	LatencyP99 time.Duration `json:"latency_p99"`
}

// latencies keeps the capture-to-decoded times of the last frames.
type latencies struct {
	mu   sync.Mutex
	ring [1024]time.Duration
	n    int
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.n%len(l.ring)] = d
	l.n++
}

func (l *latencies) percentiles() (p50, p99 time.Duration) {
	l.mu.Lock()
	s := append([]time.Duration(nil), l.ring[:min(l.n, len(l.ring))]...)
	l.mu.Unlock()
	if len(s) == 0 {
		return 0, 0
	}
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// Pipeline captures frames, decodes them on worker goroutines and emits a
// scan event for each code that comes into view. One goroutine captures;
// the newest frame waits in a one-frame slot, so a slow decoder drops
// frames rather than falling behind.
type Pipeline struct {
	cfg   Config
	clock clock.Clock
	log   *slog.Logger
	open  OpenFunc

	cap       *capture
	slot      *slot
	processed atomic.Uint64
	reads     atomic.Uint64
	events    atomic.Uint64
	latency   latencies
}

// NewPipeline returns a pipeline; log may be nil. open is the function
// that opens the source: nil means Open.
func NewPipeline(cfg Config, clk clock.Clock, log *slog.Logger, open OpenFunc) *Pipeline {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.Forget <= 0 {
		cfg.Forget = 3 * time.Second
	}
	if clk == nil {
		clk = clock.System{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if open == nil {
		open = Open
	}
	cfg.Decoder.Clock = clk
	p := &Pipeline{cfg: cfg, clock: clk, log: log.With("component", "scanner"), open: open, slot: newSlot()}
	p.cap = &capture{cfg: cfg.Source, open: open, clock: clk, log: p.log, pace: cfg.Pace, loop: cfg.Loop}
	return p
}

// Status returns the capture's status.
func (p *Pipeline) Status() Status { return p.cap.Status() }

// Stats returns the counters.
func (p *Pipeline) Stats() Stats {
	dropped, live := p.slot.counts()
	p50, p99 := p.latency.percentiles()
	return Stats{
		LatencyP50: p50,
		LatencyP99: p99,
		Captured:   p.cap.Status().Frames,
		Processed:  p.processed.Load(),
		Dropped:    dropped,
		Reads:      p.reads.Load(),
		Events:     p.events.Load(),
		Buffers:    live,
	}
}

// Run captures and decodes until ctx ends, or until a file or folder ends
// (without Loop), and sends scan events on events. It returns nil in both
// cases; every frame buffer is freed when it returns. A failing camera is
// not an error: it is reopened, and Status says so.
func (p *Pipeline) Run(ctx context.Context, events chan<- ScanEvent) error {
	deb := newDebouncer(p.cfg.Forget)
	var wg sync.WaitGroup
	for i := 0; i < p.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.work(ctx, deb, events)
		}()
	}
	err := p.cap.run(ctx, p.slot)
	p.slot.drain() // let the workers finish the last frame, then stop
	wg.Wait()
	p.slot.close()
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (p *Pipeline) work(ctx context.Context, deb *debouncer, events chan<- ScanEvent) {
	d := NewDecoder(p.cfg.Decoder)
	defer d.Close()
	for {
		f, ok := p.slot.take()
		if !ok {
			return
		}
		results := d.Decode(f.Mat)
		decoded := p.clock.Now()
		p.slot.release(f.Mat)
		p.processed.Add(1)
		p.latency.add(decoded.Sub(f.Captured))
		for _, r := range results {
			p.reads.Add(1)
			if !deb.seen(r.Text, f.Captured) {
				continue
			}
			p.events.Add(1)
			ev := ScanEvent{Text: r.Text, Seq: f.Seq, Captured: f.Captured, Decoded: decoded,
				Corners: r.Corners, Module: r.Module, Errors: r.Errors, Stage: r.Stage}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}
