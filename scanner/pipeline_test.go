package scanner_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/scanner/scannertest"
)

// people is three people presenting codes one after the other, with gaps.
func people() []scene.Appearance {
	pose := scene.Params{ModulePx: 3.5, CenterX: 0.5, CenterY: 0.5, Rotation: 8, TiltX: 10,
		Ambient: 1, Screen: 1, Gamma: 1, Noise: 2, JPEGQuality: 85}
	var out []scene.Appearance
	for i := 0; i < 3; i++ {
		out = append(out, scene.Appearance{
			Text:  scene.CodeText(100 + i),
			Start: time.Duration(i)*1500*time.Millisecond + 300*time.Millisecond,
			End:   time.Duration(i)*1500*time.Millisecond + 1400*time.Millisecond,
			Pose:  pose,
		})
	}
	return out
}

// collect runs the pipeline to its end and returns its events.
func collect(t *testing.T, p *scanner.Pipeline, ctx context.Context) []scanner.ScanEvent {
	t.Helper()
	events := make(chan scanner.ScanEvent, 64)
	var got []scanner.ScanEvent
	done := make(chan struct{})
	go func() {
		for ev := range events {
			got = append(got, ev)
		}
		close(done)
	}()
	if err := p.Run(ctx, events); err != nil {
		t.Fatal(err)
	}
	close(events)
	<-done
	return got
}

func wantEvents(t *testing.T, got []scanner.ScanEvent, texts ...string) {
	t.Helper()
	if len(got) != len(texts) {
		t.Fatalf("%d events, want %d (one per person)", len(got), len(texts))
	}
	for i, ev := range got {
		if ev.Text != texts[i] {
			t.Errorf("event %d is not person %d's code", i, i)
		}
		if ev.Decoded.Before(ev.Captured) || ev.Module <= 0 || ev.Seq == 0 {
			t.Errorf("event %d: captured %v decoded %v module %.1f seq %d", i, ev.Captured, ev.Decoded, ev.Module, ev.Seq)
		}
	}
}

// gateVideo renders people() into a 4.5 s video at 10 frames a second,
// once for the tests that read it, in gateDir.
var (
	gateDir   string
	gateVideo = sync.OnceValues(func() (string, error) {
		var err error
		if gateDir, err = os.MkdirTemp("", "scanner-test-"); err != nil {
			return "", err
		}
		path := filepath.Join(gateDir, "gate.avi")
		return path, scene.WriteVideo(path, 10, 4500*time.Millisecond, 42, people())
	})
)

func TestMain(m *testing.M) {
	code := m.Run()
	if gateDir != "" {
		os.RemoveAll(gateDir)
	}
	os.Exit(code)
}

// TestVideoFile runs a rendered video through the real OpenCV path: one
// event per person, however many frames showed each code, and every frame
// buffer freed at the end.
func TestVideoFile(t *testing.T) {
	path, err := gateVideo()
	if err != nil {
		t.Fatal(err)
	}
	ppl := people()
	p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: path}, Workers: 2}, nil, nil, nil)
	got := collect(t, p, context.Background())
	wantEvents(t, got, ppl[0].Text, ppl[1].Text, ppl[2].Text)
	st := p.Stats()
	if st.Captured != 45 || st.Processed+st.Dropped != st.Captured || st.Buffers != 0 {
		t.Errorf("stats %+v: want 45 frames, each processed or dropped, no buffers left", st)
	}
	if st.Reads <= st.Events {
		t.Errorf("%d reads for %d events: the debounce did nothing", st.Reads, st.Events)
	}
	if s := p.Status(); s.State != scanner.Ended || s.Kind != "file" {
		t.Errorf("status %+v at the end of a file", s)
	}
}

// TestImageFolder reads a folder of frames in name order: the gate
// video's frames, as JPEG files, and a file that is not an image.
func TestImageFolder(t *testing.T) {
	path, err := gateVideo()
	if err != nil {
		t.Fatal(err)
	}
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	dir := t.TempDir()
	m := gocv.NewMat()
	defer m.Close()
	for i := 0; vc.Read(&m) && !m.Empty(); i++ {
		if !gocv.IMWrite(filepath.Join(dir, "frame-"+string(rune('a'+i/26))+string(rune('a'+i%26))+".jpg"), m) {
			t.Fatalf("writing frame %d", i)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	ppl := people()
	p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: dir}, Workers: 1}, nil, nil, nil)
	wantEvents(t, collect(t, p, context.Background()), ppl[0].Text, ppl[1].Text, ppl[2].Text)
	if st := p.Stats(); st.Captured != 45 || st.Buffers != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestMJPEGStream reads an IP camera's MJPEG stream over HTTP, through
// OpenCV's FFmpeg backend, and when the stream drops, reopens it.
func TestMJPEGStream(t *testing.T) {
	m, _, err := scene.Render(scene.Params{Text: scene.CodeText(7), ModulePx: 4, CenterX: 0.5, CenterY: 0.5,
		Ambient: 1, Screen: 1, Gamma: 1, Noise: 2, Background: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	empty, _, _ := scene.Render(scene.Params{NoPhone: true, Ambient: 1, Background: 3})
	defer empty.Close()
	cam := &scannertest.MJPEG{Frames: []gocv.Mat{m, m, m, empty}, FPS: 20, Drop: 12}
	srv := httptest.NewServer(cam)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	p := scanner.NewPipeline(scanner.Config{
		Source: scanner.SourceConfig{Device: srv.URL + "/video.mjpg"}, Workers: 1, Forget: time.Hour,
	}, clock.System{}, nil, nil)
	events := make(chan scanner.ScanEvent, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() {
		defer wg.Done()
		runErr = p.Run(ctx, events)
	}()
	select {
	case ev := <-events:
		if ev.Text != scene.CodeText(7) {
			t.Error("read something else from the stream")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no event from the MJPEG stream")
	}
	// The server ends each stream after 12 frames: the capture must notice,
	// say so, and come back.
	deadline := time.Now().Add(20 * time.Second)
	for cam.Requests() < 2 || p.Status().Failures < 1 || p.Status().State != scanner.Running {
		if time.Now().After(deadline) {
			t.Fatalf("no reopen after the stream dropped: %+v, %d requests", p.Status(), cam.Requests())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	if st := p.Stats(); st.Buffers != 0 || p.Status().State != scanner.Stopped {
		t.Errorf("after stop: stats %+v, status %+v", st, p.Status())
	}
}

// TestCameraUnplugged: a camera that fails is reopened after a wait on
// the clock that never exceeds MaxBackoff (the waits are jittered, so their
// growth is not asserted); its failures show in the status; the pipeline
// never stops on its own.
func TestCameraUnplugged(t *testing.T) {
	frame, _, err := scene.Render(scene.Params{NoPhone: true, Ambient: 1, Background: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer frame.Close()
	opener := &scannertest.Opener{Next: func(n int) (scanner.Source, error) {
		if n%2 == 1 {
			return nil, errors.New("no such device")
		}
		return &scannertest.Source{Frames: []gocv.Mat{frame}, Loop: true, FailAfter: 3}, nil
	}}
	clk := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: "/dev/video0"}, Workers: 1}, clk, nil, opener.Open)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, make(chan scanner.ScanEvent, 1)) }()
	// Each failure leaves the capture waiting on the clock; move the clock
	// past the longest possible backoff each time.
	for i := 0; i < 6; i++ {
		waitFor(t, func() bool { return clk.Waiters() > 0 })
		st := p.Status()
		if st.State != scanner.Failed || st.Error == "" || st.Device != "/dev/video0" {
			t.Fatalf("while waiting to reopen: %+v", st)
		}
		clk.Advance(scanner.MaxBackoff)
	}
	waitFor(t, func() bool { return opener.Opens() >= 7 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	if st.Failures < 6 || st.Opens < 3 || st.Frames < 9 || st.State != scanner.Stopped {
		t.Errorf("status %+v", st)
	}
	if s := p.Stats(); s.Buffers != 0 {
		t.Errorf("%d frame buffers left", s.Buffers)
	}
}

// TestCameraAbsentStops: a camera that never opens is tried once per
// backoff step, each failure is logged once, nothing is tried while the
// clock stands still, and cancelling stops the capture at once instead of
// retrying without waiting.
func TestCameraAbsentStops(t *testing.T) {
	opener := &scannertest.Opener{Next: func(int) (scanner.Source, error) { return nil, errors.New("no such device") }}
	clk := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged}, nil))
	p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: "/dev/video9"}, Workers: 1}, clk, log, opener.Open)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, make(chan scanner.ScanEvent, 1)) }()
	for i := 1; i <= 4; i++ {
		waitFor(t, func() bool { return clk.Waiters() > 0 })
		time.Sleep(20 * time.Millisecond) // a spinning capture would open again here
		if n := opener.Opens(); n != i {
			t.Fatalf("%d opens while the clock stood still after failure %d", n, i)
		}
		clk.Advance(scanner.MaxBackoff)
	}
	waitFor(t, func() bool { return clk.Waiters() > 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("still running after cancel: %d opens", opener.Opens())
	}
	if n := opener.Opens(); n != 5 {
		t.Errorf("%d opens, want 5 (none after the cancel)", n)
	}
	if n := strings.Count(logged.String(), "video source failed"); n != 5 {
		t.Errorf("%d failures logged, want one per attempt (5)", n)
	}
	if st := p.Status(); st.State != scanner.Stopped || st.Failures != 5 {
		t.Errorf("status after stop: %+v", st)
	}
}

// lockedWriter serialises writes from the capture's and the test's
// goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestSlowDecoderDropsFrames: frames arriving faster than they decode are
// dropped at the slot, never queued; every frame is accounted for.
func TestSlowDecoderDropsFrames(t *testing.T) {
	var frames []gocv.Mat
	for _, c := range scene.Corpus(9, 0, 4, scene.CodeText) {
		m, _, err := scene.Render(c.Params)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		frames = append(frames, m)
	}
	opener := &scannertest.Opener{Next: func(int) (scanner.Source, error) {
		return &scannertest.Source{Frames: frames, Loop: true, FailAfter: 400}, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: "0"}, Workers: 1}, nil, nil, opener.Open)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, make(chan scanner.ScanEvent, 1)) }()
	waitFor(t, func() bool { return p.Status().Failures > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Dropped == 0 || st.Captured != 400 || st.Processed+st.Dropped != st.Captured || st.Buffers != 0 {
		t.Errorf("stats %+v: want drops, 400 captured, all accounted for, no buffers", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
