package daemon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/voice"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/verify"
)

// said records the prompts a lane says.
type said []voice.Prompt

func (s *said) Say(p voice.Prompt) { *s = append(*s, p) }

// TestVoicePrompts: a lane asks for the temperature when a code opens a
// passage, for a re-measure after each fever or sensor error, for a code
// after a card alone, then for the temperature, and for the ID card where
// the policy wants one; it says each outcome, and asks for the guard when
// a pass could not be recorded. Nothing is said twice for the same wait.
func TestVoicePrompts(t *testing.T) {
	f := credentialtest.New()
	code := func(id byte) verify.Decision {
		c := f.Credential(func(c *credential.Credential) { c.ID[0] = id })
		return verify.Verify(verify.Input{Text: f.Present(f.Issue(c), f.Now), Trust: f.Trust, Policy: verify.DefaultPolicy(),
			Now: verify.Instant{Time: f.Now}})
	}
	at := func(s float64) time.Time { return f.Now.Add(time.Duration(s * float64(time.Second))) }
	reading := func(s, c float64) hardware.Reading { return hardware.Reading{Body: c, Source: "test", At: at(s)} }

	for _, tc := range []struct {
		name   string
		policy func(*passage.Policy)
		steps  func(*passage.Lane) []passage.Effects
		want   []voice.Prompt
	}{
		{"fever", nil, func(l *passage.Lane) []passage.Effects {
			return []passage.Effects{l.Code(at(0), code(1)), l.Tick(at(1)), l.Reading(reading(2, 38.2)),
				l.Reading(reading(3, 12.0)), l.Tick(at(4)), l.Reading(reading(5, 38.1))}
		}, []voice.Prompt{voice.Measure, voice.Remeasure, voice.Remeasure, voice.Refuse}},
		{"card without a code", nil, func(l *passage.Lane) []passage.Effects {
			return []passage.Effects{l.ID(passage.IDRead{Number: credentialtest.IDNumber, Source: "test", At: at(0)}),
				l.Tick(at(1)), l.Tick(at(3)), l.Reading(reading(4, 36.5))}
		}, []voice.Prompt{voice.ShowCode, voice.Measure, voice.Pass}},
		{"next person", nil, func(l *passage.Lane) []passage.Effects {
			// The next code closes the passage: its outcome is said, not
			// drowned by the next person's prompt.
			return []passage.Effects{l.Code(at(0), code(1)), l.Code(at(2), code(2)), l.Reading(reading(3, 36.6))}
		}, []voice.Prompt{voice.Measure, voice.Refer, voice.Pass}},
		{"card reader", func(p *passage.Policy) { p.IDCheck = passage.IDReader }, func(l *passage.Lane) []passage.Effects {
			return []passage.Effects{l.Code(at(0), code(1)), l.Reading(reading(1, 36.5)),
				l.ID(passage.IDRead{Number: credentialtest.IDNumber, Source: "test", At: at(2)})}
		}, []voice.Prompt{voice.Measure, voice.ShowID, voice.Pass}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := passage.DefaultPolicy()
			if tc.policy != nil {
				tc.policy(&pol)
			}
			l := newLane(config.Lane{Name: "east"}, pol)
			var got said
			l.speech.out = &got
			for _, e := range tc.steps(l.pas) {
				for _, p := range e.Closed {
					l.sayOutcome(p, true)
				}
				l.speak(e)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("said %v, want %v", got, tc.want)
			}
		})
	}

	l := newLane(config.Lane{Name: "east"}, passage.DefaultPolicy())
	var got said
	l.speech.out = &got
	l.sayOutcome(passage.Passage{Outcome: verify.Pass}, false)
	if !slices.Equal(got, said{voice.Refer}) {
		t.Errorf("a pass not recorded: said %v, want refer", got)
	}
}

// TestVoiceLane: a lane whose voice is on plays each passage's outcome
// through the player on its device; a lane whose voice is off is silent.
func TestVoiceLane(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	red := f.Present(f.Issue(f.Credential(func(c *credential.Credential) { c.Status = credential.Red; c.ID[0] = 50 })), f.Now)
	texts := codes(f, 3)
	lb := newLaneBox(t, f, `{"temperature_required": false}`,
		map[string][]string{"east": {texts[0], red, texts[1]}, "west": {texts[2]}})
	dir := t.TempDir()
	for _, pr := range voice.All() {
		if err := os.WriteFile(filepath.Join(dir, pr.File()), []byte("RIFF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(dir, "played")
	player := filepath.Join(dir, "player")
	if err := os.WriteFile(player, []byte("#!/bin/sh\necho \"$@\" >> "+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	lb.cfg.Voice.Dir = dir
	lb.cfg.Lanes[0].Voice = config.LaneVoice{Enabled: true, Device: "plughw:1,0"}
	d := New(lb.cfg, Options{Clock: clocktest.NewRunning(f.Now), Devices: Devices{Player: player}})
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(log)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		args := strings.Fields(line)
		if len(args) != 4 || args[0] != "-q" || args[1] != "-D" || args[2] != "plughw:1,0" || filepath.Dir(args[3]) != dir {
			t.Fatalf("the player was called with %q", line)
		}
		got = append(got, strings.TrimSuffix(filepath.Base(args[3]), ".wav"))
	}
	if want := []string{"pass", "refuse", "pass"}; !slices.Equal(got, want) {
		t.Errorf("played %v, want %v (east's passages only)", got, want)
	}
}
