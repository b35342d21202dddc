package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Revocations is the revocation list the verifier checks against, synced
// or from a file: both say until when they are current.
type Revocations interface {
	ValidUntil() time.Time
}

// RevocationCollector reports how current the revocation list is.
type RevocationCollector struct {
	revs  Revocations
	clock clock.Clock

	expiry, stale *prometheus.Desc
}

// NewRevocationCollector returns a collector for revs, judged by clk.
func NewRevocationCollector(revs Revocations, clk clock.Clock) *RevocationCollector {
	return &RevocationCollector{
		revs: revs, clock: clk,
		expiry: desc("revocation_list_expiry_timestamp_seconds", "When the revocation list becomes stale (Unix time); 0 when there is none."),
		stale:  desc("revocation_list_stale", "1 when the revocation list is missing or expired: decisions say so."),
	}
}

// Describe sends the descriptions of the metrics.
func (c *RevocationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.stale
}

// Collect reads the list's expiry.
func (c *RevocationCollector) Collect(ch chan<- prometheus.Metric) {
	until := c.revs.ValidUntil()
	ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, unixSeconds(until))
	ch <- prometheus.MustNewConstMetric(c.stale, prometheus.GaugeValue, boolValue(!c.clock.Now().Before(until)))
}
