package screen

import (
	"fmt"
	"slices"
	"time"

	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/verify"
)

// Passage is a passage as the screen shows it: what to do (the headline,
// its colour and icon), why, whom to compare with the card, the
// temperatures and what the gate did.
type Passage struct {
	ID         string        `json:"id"`  // stable while it gathers and once decided
	Seq        uint64        `json:"seq"` // its event, once recorded
	Decided    bool          `json:"decided"`
	DecidedAt  time.Time     `json:"decided_at,omitzero"`
	Outcome    string        `json:"outcome,omitempty"` // pass, refer, refuse (known early for a refused code)
	Colour     string        `json:"colour"`            // green, yellow, red, grey
	Icon       string        `json:"icon"`              // pass, refuse, refer, measure, wait
	HeadlineZH string        `json:"headline_zh"`
	HeadlineEN string        `json:"headline_en"`
	Reasons    []Reason      `json:"reasons"`
	MaskedName string        `json:"masked_name,omitempty"`
	Status     string        `json:"status,omitempty"` // the code's colour
	Static     bool          `json:"static,omitempty"` // a paper code
	Readings   []Reading     `json:"readings"`
	IDCheck    string        `json:"id_check,omitempty"` // match, mismatch, confirmed, only, invalid
	IDMasked   string        `json:"id_masked,omitempty"`
	Gate       string        `json:"gate,omitempty"` // pulse, closed, held_open
	Recorded   bool          `json:"recorded"`
	Waiting    []string      `json:"waiting,omitempty"`
	Guards     []GuardAction `json:"guards,omitempty"`
}

// Reason is a reason in words.
type Reason struct {
	Code string `json:"code"`
	ZH   string `json:"zh"`
	EN   string `json:"en"`
}

// Reading is a temperature reading as the screen shows it.
type Reading struct {
	Celsius float64 `json:"celsius"`
	Source  string  `json:"source"`
	Fever   bool    `json:"fever,omitempty"`
	Error   bool    `json:"error,omitempty"` // outside the sensor's range
}

// GuardAction is what a guard did in the passage.
type GuardAction struct {
	Guard  string `json:"guard"`
	Kind   string `json:"kind"`
	Reason string `json:"reason,omitempty"`
}

// Closed is what the lane knows of a passage once it is decided: its
// event's sequence number, what the gate did, and whether it was recorded.
type Closed struct {
	Seq      uint64
	Gate     string
	Recorded bool
	IDCheck  string
	IDMasked string
}

// View returns the screen's view of a passage: one gathering (closed nil)
// or decided.
func View(p passage.Passage, pol passage.Policy, closed *Closed, decidedAt time.Time) Passage {
	v := Passage{ID: fmt.Sprintf("%s-%d", p.Lane, p.Opened.UnixNano()), Reasons: []Reason{}, Readings: []Reading{},
		Waiting: p.Waiting}
	for _, r := range p.Reasons {
		zh, en := r.Words()
		v.Reasons = append(v.Reasons, Reason{Code: string(r), ZH: zh, EN: en})
	}
	if c := p.Code; c != nil && c.Code != nil {
		v.MaskedName, v.Status, v.Static = c.Code.MaskedName, c.Code.Status, c.Code.Static
	}
	for _, r := range p.Readings {
		v.Readings = append(v.Readings, Reading{Celsius: r.Body, Source: r.Source,
			Fever: r.Body >= pol.FeverThreshold && r.Body <= pol.SensorMax, Error: r.Body < pol.SensorMin || r.Body > pol.SensorMax})
	}
	for _, a := range p.Actions {
		v.Guards = append(v.Guards, GuardAction{Guard: a.Guard, Kind: string(a.Kind), Reason: a.Reason})
	}
	if closed != nil {
		v.Decided, v.DecidedAt, v.Seq, v.Gate, v.Recorded = true, decidedAt, closed.Seq, closed.Gate, closed.Recorded
		v.IDCheck, v.IDMasked = closed.IDCheck, closed.IDMasked
		if v.MaskedName == "" {
			v.MaskedName = closed.IDMasked
		}
	}
	v.headline(p)
	return v
}

// headline says what to do: the outcome once it is known (a refused code
// is refused whatever comes), else what the passage waits for.
func (v *Passage) headline(p passage.Passage) {
	refused := p.Outcome == verify.Refuse
	switch {
	case v.Decided || refused:
		v.Outcome = p.Outcome.String()
		switch p.Outcome {
		case verify.Pass:
			v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "green", "pass", "通行", "Pass"
			if p.IDOnly() {
				v.HeadlineZH, v.HeadlineEN = "通行（凭身份证）", "Pass (on ID card)"
			}
		case verify.Refer:
			v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "yellow", "refer", "请人工核验", "Second check"
		default:
			v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "red", "refuse", "禁止通行", "Do not pass"
		}
	case slices.Contains(p.Waiting, "remeasure"):
		v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "yellow", "measure", "请复测体温", "Temperature again, please"
	case slices.Contains(p.Waiting, "temperature"):
		v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "grey", "measure", "请测量体温", "Temperature, please"
	case slices.Contains(p.Waiting, "id_card"):
		v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "grey", "wait", "请出示身份证", "Your ID card, please"
	case slices.Contains(p.Waiting, "guard"):
		v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "grey", "wait", "请等待核验", "Wait for the guard"
	default:
		v.Colour, v.Icon, v.HeadlineZH, v.HeadlineEN = "grey", "wait", "请出示健康码", "Your health code, please"
	}
}

// Lane is one lane on the screen: the passage gathering, and the last
// ones decided, newest first.
type Lane struct {
	Lane    string    `json:"lane"`
	Current *Passage  `json:"current"`
	Last    []Passage `json:"last"`
}

// maxLast is how many decided passages a lane shows.
const maxLast = 6

// Item is one entry of the status line: a label, a value, and whether it
// needs attention.
type Item struct {
	Key   string `json:"key"`
	ZH    string `json:"zh"`
	EN    string `json:"en"`
	Value string `json:"value"`
	Bad   bool   `json:"bad"`
}

// Status is the status line.
type Status struct {
	Checkpoint string `json:"checkpoint"`
	Items      []Item `json:"items"`
}
