package hardwaretest

import (
	"github.com/checkpointd/checkpoint/hardware/gate"
	"github.com/checkpointd/checkpoint/internal/clock"
)

var (
	_ gate.PinOut = (*Pin)(nil)
	_ gate.PinIn  = (*InputPin)(nil)
)

// GatePins are a gate's pins, all fakes, stamping writes with one clock.
// (gate's own tests are in package gate_test: this package imports gate.)
type GatePins struct {
	Relay, Green, Red, Buzzer *Pin
	FireAlarm                 *InputPin // starts inactive
}

// NewGatePins returns every pin of a gate, inactive.
func NewGatePins(clk clock.Clock) *GatePins {
	return &GatePins{
		Relay:     NewPin(clk),
		Green:     NewPin(clk),
		Red:       NewPin(clk),
		Buzzer:    NewPin(clk),
		FireAlarm: NewInputPin(false),
	}
}

// Pins returns them as a gate takes them.
func (p *GatePins) Pins() gate.Pins {
	return gate.Pins{Relay: p.Relay, Green: p.Green, Red: p.Red, Buzzer: p.Buzzer, FireAlarm: p.FireAlarm}
}
