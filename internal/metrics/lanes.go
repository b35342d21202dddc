package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Lane is what the lane collector reads of one lane: its passages, its
// thermometer's readings, its devices' state and its gate.
type Lane struct {
	Name         string
	Passages     func() uint64
	Readings     func() uint64 // temperature readings taken
	SensorErrors func() uint64 // readings outside the sensor's range
	// Devices says whether each device (camera, thermometer, id_reader,
	// scanner) is up, by kind.
	Devices map[string]func() bool
	// Gate reads the gate's pulses, fire alarm and pin errors; nil: the
	// lane has no gate.
	Gate func() (pulses uint64, alarm bool, errors uint64)
}

// LaneCollector reports each lane's devices and gate, labelled by lane.
type LaneCollector struct {
	lanes []Lane

	up, passages, readings, sensorErrors, pulses, alarm, gateErrors *prometheus.Desc
}

// NewLaneCollector returns a collector for lanes.
func NewLaneCollector(lanes []Lane) *LaneCollector {
	return &LaneCollector{
		lanes:        lanes,
		up:           desc("device_up", "1 when the device is open and working, by lane and device.", "lane", "device"),
		passages:     desc("passages_total", "Passages decided (one person through one lane each).", "lane"),
		readings:     desc("temperature_readings_total", "Temperature readings the lane's thermometer gave.", "lane"),
		sensorErrors: desc("temperature_sensor_errors_total", "Readings outside the sensor's range: sensor errors, not fevers.", "lane"),
		pulses:       desc("gate_pulses_total", "Times the gate relay was pulsed for a pass.", "lane"),
		alarm:        desc("fire_alarm", "1 while the fire alarm holds the gate open.", "lane"),
		gateErrors:   desc("gate_errors_total", "Gate pin writes or reads that failed.", "lane"),
	}
}

// Describe sends the descriptions of the metrics.
func (c *LaneCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.passages, c.readings, c.sensorErrors, c.pulses, c.alarm, c.gateErrors} {
		ch <- d
	}
}

// Collect reads the lanes.
func (c *LaneCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.lanes {
		for kind, up := range l.Devices {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, boolValue(up()), l.Name, kind)
		}
		ch <- prometheus.MustNewConstMetric(c.passages, prometheus.CounterValue, float64(l.Passages()), l.Name)
		ch <- prometheus.MustNewConstMetric(c.readings, prometheus.CounterValue, float64(l.Readings()), l.Name)
		ch <- prometheus.MustNewConstMetric(c.sensorErrors, prometheus.CounterValue, float64(l.SensorErrors()), l.Name)
		if l.Gate != nil {
			pulses, alarm, errs := l.Gate()
			ch <- prometheus.MustNewConstMetric(c.pulses, prometheus.CounterValue, float64(pulses), l.Name)
			ch <- prometheus.MustNewConstMetric(c.alarm, prometheus.GaugeValue, boolValue(alarm), l.Name)
			ch <- prometheus.MustNewConstMetric(c.gateErrors, prometheus.CounterValue, float64(errs), l.Name)
		}
	}
}
