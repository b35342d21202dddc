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

// ScannerCollector reports the camera's state and the pipeline's counters.
type ScannerCollector struct {
	p Pipeline

	state, opens, failures                  *prometheus.Desc
	captured, processed, dropped, reads     *prometheus.Desc
	events, latencyP50, latencyP99, buffers *prometheus.Desc
}

// NewScannerCollector returns a collector for p.
func NewScannerCollector(p Pipeline) *ScannerCollector {
	return &ScannerCollector{
		p:          p,
		state:      desc("camera_state", "1 for the camera's current state (opening, running, failed, ended, stopped).", "device", "state"),
		opens:      desc("camera_opens_total", "Times the camera was opened."),
		failures:   desc("camera_failures_total", "Times the camera failed to open or stopped delivering frames."),
		captured:   desc("frames_captured_total", "Frames read from the camera."),
		processed:  desc("frames_processed_total", "Frames a decoder worker looked at."),
		dropped:    desc("frames_dropped_total", "Frames replaced by a newer one before a worker took them."),
		reads:      desc("codes_read_total", "Codes read from frames, before debouncing."),
		events:     desc("scans_total", "Scan events: codes that came into view."),
		latencyP50: desc("scan_latency_p50_seconds", "Median time from capture to the end of decoding, over recent frames."),
		latencyP99: desc("scan_latency_p99_seconds", "99th percentile of the time from capture to the end of decoding, over recent frames."),
		buffers:    desc("frame_buffers", "Frame buffers allocated now."),
	}
}

// Describe sends the descriptions of the metrics.
func (c *ScannerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.opens, c.failures, c.captured, c.processed, c.dropped,
		c.reads, c.events, c.latencyP50, c.latencyP99, c.buffers} {
		ch <- d
	}
}

// Collect reads the pipeline.
func (c *ScannerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Status()
	for s := scanner.Opening; s <= scanner.Stopped; s++ {
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, boolValue(st.State == s), st.Device, s.String())
	}
	ch <- prometheus.MustNewConstMetric(c.opens, prometheus.CounterValue, float64(st.Opens))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.Failures))
	n := c.p.Stats()
	ch <- prometheus.MustNewConstMetric(c.captured, prometheus.CounterValue, float64(n.Captured))
	ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(n.Processed))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n.Dropped))
	ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(n.Reads))
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n.Events))
	ch <- prometheus.MustNewConstMetric(c.latencyP50, prometheus.GaugeValue, n.LatencyP50.Seconds())
	ch <- prometheus.MustNewConstMetric(c.latencyP99, prometheus.GaugeValue, n.LatencyP99.Seconds())
	ch <- prometheus.MustNewConstMetric(c.buffers, prometheus.GaugeValue, float64(n.Buffers))
}
