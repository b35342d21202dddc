// Package voice speaks a lane's prompts at stations ("绿码，请通行"): one
// WAV file a prompt, played through ALSA's aplay, one at a time, never
// holding up a decision. The prompts' texts are here and nowhere else:
// internal/voice/gen renders them with espeak-ng for `make setup`.
// internal/daemon imports it.
package voice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Prompt is something a lane says; its value names its WAV file.
type Prompt string

// The prompts.
const (
	Pass      Prompt = "pass"
	Refuse    Prompt = "refuse"
	Refer     Prompt = "refer"
	Remeasure Prompt = "remeasure"
	Measure   Prompt = "measure"
	ShowCode  Prompt = "show_code"
	ShowID    Prompt = "show_id"
)

var texts = map[Prompt]string{
	Pass:      "绿码，请通行",
	Refuse:    "禁止通行",
	Refer:     "请人工核验",
	Remeasure: "体温异常，请复测",
	Measure:   "请测量体温",
	ShowCode:  "请出示健康码",
	ShowID:    "请出示身份证",
}

// All returns every prompt.
func All() []Prompt {
	return []Prompt{Pass, Refuse, Refer, Remeasure, Measure, ShowCode, ShowID}
}

// Text returns what the prompt says, in Mandarin.
func (p Prompt) Text() string { return texts[p] }

// File is the name of the prompt's WAV file in Config.Dir.
func (p Prompt) File() string { return string(p) + ".wav" }

// Config says where the prompts are and how to play them.
type Config struct {
	Dir     string // the WAV files, one a prompt: pass.wav, refuse.wav, ...
	Device  string // the ALSA device (aplay -D); empty: the default
	Command string // the player, called as COMMAND -q [-D DEVICE] FILE; empty: aplay
}

// maxPlay bounds one prompt: a player that hangs (a stuck sound device)
// is stopped, so that the next prompt can play.
const maxPlay = 10 * time.Second

// Player plays one lane's prompts one at a time. A prompt said while
// another plays waits in a slot of one: a newer prompt replaces it.
type Player struct {
	cfg Config
	clk clock.Clock
	log *slog.Logger

	wake chan struct{}
	mu   sync.Mutex
	next Prompt          // waiting; "" for none
	told map[string]bool // failures already logged
}

// New returns a player; Run plays what Say asks for.
func New(cfg Config, clk clock.Clock, log *slog.Logger) *Player {
	if cfg.Command == "" {
		cfg.Command = "aplay"
	}
	return &Player{cfg: cfg, clk: clk, log: log.With("component", "voice"), wake: make(chan struct{}, 1), told: map[string]bool{}}
}

// Say asks for a prompt, without waiting: it replaces the prompt waiting,
// if any; the prompt playing finishes first.
func (p *Player) Say(pr Prompt) {
	p.mu.Lock()
	p.next = pr
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run plays the prompts said until ctx ends, which stops the one playing.
func (p *Player) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		}
		p.mu.Lock()
		pr := p.next
		p.next = ""
		p.mu.Unlock()
		if pr != "" {
			p.play(ctx, pr)
		}
	}
}

// play plays one prompt to its end, for at most maxPlay. A failure is
// logged once for each kind (and file): the box goes on without sound.
func (p *Player) play(ctx context.Context, pr Prompt) {
	file := filepath.Join(p.cfg.Dir, pr.File())
	if _, err := os.Stat(file); err != nil {
		p.fail("file:"+file, "voice prompt missing", "file", file, "err", err)
		return
	}
	playing, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.clk.After(maxPlay):
			cancel()
		case <-playing.Done():
		}
	}()
	args := []string{"-q"}
	if p.cfg.Device != "" {
		args = append(args, "-D", p.cfg.Device)
	}
	cmd := exec.CommandContext(playing, p.cfg.Command, append(args, file)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil, ctx.Err() != nil: // played, or the box is stopping
	case playing.Err() != nil:
		p.fail("stuck", "voice player stopped: a prompt played too long", "device", p.device(), "limit", maxPlay)
	case errors.As(err, &exit):
		p.fail("device", "voice player failed: this lane is silent", "device", p.device(), "file", file,
			"err", fmt.Errorf("%w: %s", err, lastLine(stderr.String())))
	default:
		p.fail("command", "voice player not started", "command", p.cfg.Command, "err", err)
	}
}

// fail logs a failure the first time its kind comes.
func (p *Player) fail(kind, msg string, attrs ...any) {
	p.mu.Lock()
	seen := p.told[kind]
	p.told[kind] = true
	p.mu.Unlock()
	if !seen {
		p.log.Warn(msg, attrs...)
	}
}

func (p *Player) device() string {
	if p.cfg.Device == "" {
		return "default"
	}
	return p.cfg.Device
}

// lastLine is the end of a player's complaint, for the log: aplay's own
// words come after ALSA's.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	s = s[strings.LastIndex(s, "\n")+1:]
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
