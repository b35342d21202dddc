package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkpointd/checkpoint/scanner"
)

// Pipeline is what the scanner collector reads; *scanner.Pipeline has it.
type Pipeline interface {
	Status() scanner.Status
	Stats() scanner.Stats
}

// ScannerCollector reports each lane's camera state and pipeline
// counters, labelled by lane.
type ScannerCollector struct {
	lanes map[string]Pipeline

	state, opens, failures                  *prometheus.Desc
	captured, processed, dropped, reads     *prometheus.Desc
	events, latencyP50, latencyP99, buffers *prometheus.Desc
}

// NewScannerCollector returns a collector for the lanes' pipelines, by
// lane name.
func NewScannerCollector(lanes map[string]Pipeline) *ScannerCollector {
	return &ScannerCollector{
		lanes:      lanes,
		state:      desc("camera_state", "1 for the camera's current state (opening, running, failed, ended, stopped).", "lane", "device", "state"),
		opens:      desc("camera_opens_total", "Times the camera was opened.", "lane"),
		failures:   desc("camera_failures_total", "Times the camera failed to open or stopped delivering frames.", "lane"),
		captured:   desc("frames_captured_total", "Frames read from the camera.", "lane"),
		processed:  desc("frames_processed_total", "Frames a decoder worker looked at.", "lane"),
		dropped:    desc("frames_dropped_total", "Frames replaced by a newer one before a worker took them.", "lane"),
		reads:      desc("codes_read_total", "Codes read from frames, before debouncing.", "lane"),
		events:     desc("scans_total", "Scan events: codes that came into view.", "lane"),
		latencyP50: desc("scan_latency_p50_seconds", "Median time from capture to the end of decoding, over recent frames.", "lane"),
		latencyP99: desc("scan_latency_p99_seconds", "99th percentile of the time from capture to the end of decoding, over recent frames.", "lane"),
		buffers:    desc("frame_buffers", "Frame buffers allocated now.", "lane"),
	}
}

// Describe sends the descriptions of the metrics.
func (c *ScannerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.opens, c.failures, c.captured, c.processed, c.dropped,
		c.reads, c.events, c.latencyP50, c.latencyP99, c.buffers} {
		ch <- d
	}
}

// Collect reads the pipelines.
func (c *ScannerCollector) Collect(ch chan<- prometheus.Metric) {
	for lane, p := range c.lanes {
		st := p.Status()
		for s := scanner.Opening; s <= scanner.Stopped; s++ {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, boolValue(st.State == s), lane, st.Device, s.String())
		}
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lane)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lane)
		}
		counter(c.opens, float64(st.Opens))
		counter(c.failures, float64(st.Failures))
		n := p.Stats()
		counter(c.captured, float64(n.Captured))
		counter(c.processed, float64(n.Processed))
		counter(c.dropped, float64(n.Dropped))
		counter(c.reads, float64(n.Reads))
		counter(c.events, float64(n.Events))
		gauge(c.latencyP50, n.LatencyP50.Seconds())
		gauge(c.latencyP99, n.LatencyP99.Seconds())
		gauge(c.buffers, float64(n.Buffers))
	}
}
