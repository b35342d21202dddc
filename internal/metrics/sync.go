package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkpointd/checkpoint/sync"
)

// Syncer is what the sync collector reads; *sync.Syncer has it.
type Syncer interface {
	Status() sync.Status
}

// SyncCollector reports the link to the authority.
type SyncCollector struct {
	s Syncer

	lastAttempt, lastOK, failures, offset, trustVersion, step, refused *prometheus.Desc
}

// NewSyncCollector returns a collector for s.
func NewSyncCollector(s Syncer) *SyncCollector {
	return &SyncCollector{
		s:            s,
		lastAttempt:  desc("sync_last_attempt_timestamp_seconds", "When the last sync with the authority was tried (Unix time)."),
		lastOK:       desc("sync_last_success_timestamp_seconds", "When the last sync with the authority succeeded (Unix time); 0: never."),
		failures:     desc("sync_consecutive_failures", "Syncs failed since the last success."),
		offset:       desc("clock_offset_seconds", "The authority's clock minus the checkpoint's, at the last sync."),
		trustVersion: desc("trust_list_version", "Version of the trust list in use."),
		step: desc("clock_step_seconds",
			"How far the wall clock was found stepped against the clock anchor (positive: ahead); 0: not stepped, or not measurable after a reboot."),
		refused: desc("clock_anchor_refused",
			"1 if the last status answer came too slowly (over sync.max_anchor_rtt) to anchor the clock."),
	}
}

// Describe sends the descriptions of the metrics.
func (c *SyncCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lastAttempt, c.lastOK, c.failures, c.offset, c.trustVersion, c.step, c.refused} {
		ch <- d
	}
}

// Collect reads the syncer's status.
func (c *SyncCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	ch <- prometheus.MustNewConstMetric(c.lastAttempt, prometheus.GaugeValue, unixSeconds(st.LastAttempt))
	ch <- prometheus.MustNewConstMetric(c.lastOK, prometheus.GaugeValue, unixSeconds(st.LastOK))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.GaugeValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(c.offset, prometheus.GaugeValue, st.Offset.Seconds())
	ch <- prometheus.MustNewConstMetric(c.trustVersion, prometheus.GaugeValue, float64(st.TrustVersion))
	ch <- prometheus.MustNewConstMetric(c.step, prometheus.GaugeValue, st.ClockStep.Seconds())
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.GaugeValue, boolValue(st.AnchorRefused != ""))
}
