package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkpointd/checkpoint/store"
)

// Box is what the store collector reads; *store.Box has it.
type Box interface {
	Disk() store.DiskStatus
	LastSeq() uint64
	Mark() (uint64, error)
	Unsent() (uint64, error)
	RevocationVersion() (version uint64, expires time.Time, set store.SetDigest)
}

// StoreCollector reports the disk alarm, the event log and the synced
// revocation list.
type StoreCollector struct {
	box Box

	diskFree, diskLow, diskErr         *prometheus.Desc
	recorded, acked, unsent, scrapeErr *prometheus.Desc
	revVersion, revEntries             *prometheus.Desc
}

// NewStoreCollector returns a collector for box.
func NewStoreCollector(box Box) *StoreCollector {
	return &StoreCollector{
		box:        box,
		diskFree:   desc("disk_free_bytes", "Free space where the database lives, at the last commit."),
		diskLow:    desc("disk_low", "1 when the free space is below store.disk_low_mb: the disk alarm."),
		diskErr:    desc("disk_check_failed", "1 when the free space could not be measured."),
		recorded:   desc("events_recorded", "Sequence number of the last event recorded (fsynced)."),
		acked:      desc("events_acknowledged", "Highest sequence number the authority holds with nothing missing before it."),
		unsent:     desc("events_unsent", "Events recorded but not yet acknowledged by the authority."),
		scrapeErr:  desc("store_read_failed", "1 when the store could not be read for this scrape."),
		revVersion: desc("revocation_list_version", "Version of the last complete revocation list synced into the store."),
		revEntries: desc("revocation_list_entries", "Entries in the revocation list synced into the store."),
	}
}

// Describe sends the descriptions of the metrics.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.diskFree, c.diskLow, c.diskErr, c.recorded, c.acked, c.unsent,
		c.scrapeErr, c.revVersion, c.revEntries} {
		ch <- d
	}
}

// Collect reads the store.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.box.Disk()
	ch <- prometheus.MustNewConstMetric(c.diskFree, prometheus.GaugeValue, float64(d.Free))
	ch <- prometheus.MustNewConstMetric(c.diskLow, prometheus.GaugeValue, boolValue(d.Low))
	ch <- prometheus.MustNewConstMetric(c.diskErr, prometheus.GaugeValue, boolValue(d.Err != ""))

	ch <- prometheus.MustNewConstMetric(c.recorded, prometheus.CounterValue, float64(c.box.LastSeq()))
	mark, err := c.box.Mark()
	unsent, err2 := c.box.Unsent()
	ch <- prometheus.MustNewConstMetric(c.scrapeErr, prometheus.GaugeValue, boolValue(err != nil || err2 != nil))
	if err == nil && err2 == nil {
		ch <- prometheus.MustNewConstMetric(c.acked, prometheus.GaugeValue, float64(mark))
		ch <- prometheus.MustNewConstMetric(c.unsent, prometheus.GaugeValue, float64(unsent))
	}

	version, _, set := c.box.RevocationVersion()
	ch <- prometheus.MustNewConstMetric(c.revVersion, prometheus.GaugeValue, float64(version))
	ch <- prometheus.MustNewConstMetric(c.revEntries, prometheus.GaugeValue, float64(set.Count))
}
