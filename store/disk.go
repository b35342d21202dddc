package store

import (
	"path/filepath"
	"syscall"
	"time"
)

// DiskStatus is the free space where the database lives.
type DiskStatus struct {
	Free    int64     `json:"free_bytes"`
	Low     bool      `json:"low"` // below Options.DiskLow: the alarm is raised
	Checked time.Time `json:"checked"`
	Err     string    `json:"error,omitempty"`
}

// Disk returns the last free-space check.
func (b *Box) Disk() DiskStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.disk
}

// checkDisk measures free space after each commit (and at open). Crossing
// below the threshold raises the alarm once, in the log and in Disk; the
// checkpoint goes on scanning and recording for as long as the disk takes
// it, and never deletes unsent events to make room.
func (b *Box) checkDisk() {
	var st syscall.Statfs_t
	d := DiskStatus{Checked: b.clock.Now()}
	if err := syscall.Statfs(filepath.Dir(b.path), &st); err != nil {
		d.Err = err.Error()
	} else {
		d.Free = int64(st.Bavail) * int64(st.Bsize)
		d.Low = d.Free < b.opts.DiskLow
	}
	b.mu.Lock()
	was := b.disk.Low
	b.disk = d
	b.mu.Unlock()
	switch {
	case d.Low && !was:
		b.log.Error("disk nearly full: unsent events are kept, but new ones may soon fail to record",
			"free_bytes", d.Free, "threshold_bytes", b.opts.DiskLow, "path", b.path)
	case !d.Low && was:
		b.log.Info("disk space back above the alarm threshold", "free_bytes", d.Free)
	}
}
