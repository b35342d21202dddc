package daemon

import (
	"slices"

	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/voice"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/verify"
)

// Voice is what a lane asks of its speaker: a prompt, said without
// waiting.
type Voice interface {
	Say(voice.Prompt)
}

// speech is a lane's spoken prompts: each decided passage's outcome, and
// what the passage gathering waits for, said once each time it changes.
type speech struct {
	out      Voice         // nil: the lane is silent
	player   *voice.Player // out, run with the lane's devices
	said     voice.Prompt  // what the passage gathering was last asked for
	readings int           // its readings then: each re-measure is asked for
}

// speech returns a lane's prompts: silent unless its voice is on.
func (d *Daemon) speech(cfg config.Lane) speech {
	if !cfg.Voice.Enabled {
		return speech{}
	}
	p := voice.New(voice.Config{Dir: d.cfg.Voice.Dir, Device: cfg.Voice.Device, Command: d.devices.Player},
		d.clock, d.log.With("lane", cfg.Name))
	return speech{out: p, player: p}
}

// sayOutcome says a decided passage's outcome. A pass that could not be
// recorded left the gate shut: the guard lets the person through.
func (l *lane) sayOutcome(p passage.Passage, recorded bool) {
	switch s := &l.speech; {
	case s.out == nil:
	case p.Outcome == verify.Pass && recorded:
		s.out.Say(voice.Pass)
	case p.Outcome == verify.Refuse:
		s.out.Say(voice.Refuse)
	default:
		s.out.Say(voice.Refer)
	}
}

// speak asks the person at the lane for what the passage gathering waits
// for. After a decision it says nothing more: the next person's prompt
// would replace the outcome not yet said.
func (l *lane) speak(e passage.Effects) {
	s := &l.speech
	if s.out == nil {
		return
	}
	pr, n := voice.Prompt(""), 0
	if p := e.Current; p != nil {
		pr, n = waitingFor(p), len(p.Readings)
	}
	if pr != "" && len(e.Closed) == 0 && (pr != s.said || pr == voice.Remeasure && n != s.readings) {
		s.out.Say(pr)
	}
	s.said, s.readings = pr, n
}

// waitingFor is the prompt for what an open passage waits for first: a
// re-measure, a code (after a card), a temperature, an ID card.
func waitingFor(p *passage.Passage) voice.Prompt {
	switch {
	case p.Temp == passage.TempRemeasure:
		return voice.Remeasure
	case slices.Contains(p.Waiting, "code"):
		return voice.ShowCode
	case slices.Contains(p.Waiting, "temperature"):
		return voice.Measure
	case slices.Contains(p.Waiting, "id_card"):
		return voice.ShowID
	}
	return ""
}
