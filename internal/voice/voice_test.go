package voice

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

// TestPromptsRender: espeak-ng renders every prompt as Mandarin (no word
// of it read in English), into a WAV that is not silence and as long as
// a short sentence.
func TestPromptsRender(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Fatal("espeak-ng is not installed: make setup installs it")
	}
	dir := t.TempDir()
	for _, pr := range All() {
		if pr.Text() == "" {
			t.Errorf("%s has no text", pr)
			continue
		}
		phonemes, err := exec.Command("espeak-ng", "-q", "-x", "-v", EspeakVoice, pr.Text()).Output()
		if err != nil || strings.Contains(string(phonemes), "(en)") || len(bytes.TrimSpace(phonemes)) == 0 {
			t.Errorf("%s: espeak-ng reads %q as %q (%v)", pr, pr.Text(), phonemes, err)
		}
		if err := Render(context.Background(), pr, dir); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, pr.File()))
		if err != nil {
			t.Fatal(err)
		}
		rms, length, err := level(data)
		if err != nil || length < 500*time.Millisecond || length > 5*time.Second {
			t.Errorf("%s: RMS %.3f, %v long, %v", pr, rms, length, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != len(All()) {
		t.Errorf("%d files in the folder, want one a prompt", len(entries))
	}
}

// wav is a 16-bit PCM WAV of the samples.
func wav(channels, rate int, samples []int16) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*len(samples)))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1))
	le(uint16(channels))
	le(uint32(rate))
	le(uint32(rate * channels * 2))
	le(uint16(channels * 2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(2 * len(samples)))
	le(samples)
	return b.Bytes()
}

func TestLevel(t *testing.T) {
	loud := make([]int16, 16000)
	for i := range loud {
		loud[i] = 8000 * int16(1-2*(i/20%2)) // a square wave, a quarter of full scale
	}
	if rms, length, err := level(wav(2, 8000, loud)); err != nil || rms < 0.24 || rms > 0.25 || length != time.Second {
		t.Errorf("stereo square wave: RMS %v, %v, %v", rms, length, err)
	}
	if _, length, err := level(wav(1, 8000, make([]int16, 8000))); err == nil || length != time.Second {
		t.Errorf("silence: %v, %v", length, err)
	}
	for name, data := range map[string][]byte{
		"empty": nil, "text": []byte("RIFF....WAVEhello"), "no samples": wav(1, 8000, nil),
		"8-bit": func() []byte { b := wav(1, 8000, loud); b[34] = 8; return b }(),
	} {
		if _, _, err := level(data); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// fakePlayer writes a player script into dir: it appends the name of the
// file it is asked to play to dir/played, then runs body.
func fakePlayer(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "player")
	script := "#!/bin/sh\nfor a; do f=$a; done\necho \"$(basename \"$f\" .wav)\" >> " + filepath.Join(dir, "played") + "\n" + body + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// promptsDir is a folder with a file for every prompt.
func promptsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, pr := range All() {
		if err := os.WriteFile(filepath.Join(dir, pr.File()), []byte("RIFF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func played(dir string) []string {
	data, _ := os.ReadFile(filepath.Join(dir, "played"))
	return strings.Fields(string(data))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// logBuffer is a log that tests can read while the player writes it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// start runs a player until the test ends, and returns what stops it and
// a channel closed once Run has returned (it reports Run's error).
func start(t *testing.T, p *Player) (context.CancelFunc, <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return cancel, done
}

// TestSlot: Say never waits, not even with no player running; the prompt
// playing finishes; of the prompts said meanwhile, the newest plays.
func TestSlot(t *testing.T) {
	dir := promptsDir(t)
	release := filepath.Join(dir, "release")
	cmd := fakePlayer(t, dir, "while [ ! -e "+release+" ]; do sleep 0.01; done")
	p := New(Config{Dir: dir, Command: cmd}, clock.System{}, slog.New(slog.DiscardHandler))
	for range 1000 {
		p.Say(Measure)
	}
	p.Say(Pass)
	start(t, p)
	waitFor(t, "pass to play", func() bool { return len(played(dir)) == 1 })
	p.Say(Refuse)
	p.Say(Refer)
	p.Say(ShowID)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the waiting prompt to play", func() bool { return len(played(dir)) == 2 })
	time.Sleep(100 * time.Millisecond)
	if got := played(dir); !slices.Equal(got, []string{"pass", "show_id"}) {
		t.Errorf("played %v, want pass then show_id", got)
	}
}

// TestFailuresLoggedOnce: a sound device that fails (aplay exits 1) is
// logged once, not for every prompt; so are a missing prompt file and a
// missing player; the player goes on.
func TestFailuresLoggedOnce(t *testing.T) {
	dir := promptsDir(t)
	cmd := fakePlayer(t, dir, "echo \"ALSA lib confmisc.c:855:(parse_card) cannot find card '0'\" >&2\n"+
		"echo 'aplay: main:831: audio open error: No such file or directory' >&2\nexit 1")
	var log logBuffer
	p := New(Config{Dir: dir, Device: "plughw:1,0", Command: cmd}, clock.System{}, log.logger())
	start(t, p)
	for i, pr := range []Prompt{Pass, Refuse, Pass} {
		p.Say(pr)
		waitFor(t, string(pr)+" to be tried", func() bool { return len(played(dir)) == i+1 })
	}
	os.Remove(filepath.Join(dir, Refer.File()))
	p.Say(Refer)
	p.Say(Refer)
	waitFor(t, "the missing file to be logged", func() bool { return strings.Contains(log.String(), "voice prompt missing") })
	p.Say(Refer)
	p.Say(ShowID)
	waitFor(t, "show_id to be tried", func() bool { return len(played(dir)) == 4 })
	out := log.String()
	if n := strings.Count(out, "voice player failed"); n != 1 || !strings.Contains(out, "plughw:1,0") ||
		!strings.Contains(out, "audio open error") || !strings.Contains(out, "component=voice") {
		t.Errorf("device failure logged %d times:\n%s", n, out)
	}
	if n := strings.Count(out, "voice prompt missing"); n != 1 || !strings.Contains(out, Refer.File()) {
		t.Errorf("missing file logged %d times:\n%s", n, out)
	}

	var log2 logBuffer
	p = New(Config{Dir: dir, Command: "no-such-player"}, clock.System{}, log2.logger())
	start(t, p)
	for range 3 {
		p.Say(Pass)
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the missing player to be logged", func() bool { return strings.Contains(log2.String(), "voice player not started") })
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(log2.String(), "level="); n != 1 {
		t.Errorf("missing player: %d lines:\n%s", n, log2.String())
	}
}

// TestStops: the end of ctx stops the prompt playing, and Run returns.
func TestStops(t *testing.T) {
	dir := promptsDir(t)
	cmd := fakePlayer(t, dir, "exec sleep 60")
	var log logBuffer
	p := New(Config{Dir: dir, Command: cmd}, clock.System{}, log.logger())
	cancel, done := start(t, p)
	p.Say(Remeasure)
	waitFor(t, "remeasure to play", func() bool { return len(played(dir)) == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
	if log.String() != "" {
		t.Errorf("a stop is not a failure:\n%s", log.String())
	}
}

// TestStuckPlayer: a prompt that plays longer than maxPlay (a stuck sound
// device) is stopped, logged once, and the next prompt plays.
func TestStuckPlayer(t *testing.T) {
	dir := promptsDir(t)
	cmd := fakePlayer(t, dir, "exec sleep 60")
	clk := clocktest.New(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	var log logBuffer
	p := New(Config{Dir: dir, Command: cmd}, clk, log.logger())
	start(t, p)
	for i, pr := range []Prompt{Pass, Refuse, Refer} {
		p.Say(pr)
		waitFor(t, string(pr)+" to play", func() bool { return len(played(dir)) == i+1 && clk.Waiters() == 1 })
		clk.Advance(maxPlay)
	}
	waitFor(t, "the stuck player to be logged", func() bool { return strings.Contains(log.String(), "too long") })
	if n := strings.Count(log.String(), "level="); n != 1 {
		t.Errorf("%d lines logged:\n%s", n, log.String())
	}
}
