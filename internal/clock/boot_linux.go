package clock

import (
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// bootID is read once: a process does not outlive its boot.
var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

// Boot returns the kernel's id of the current boot and CLOCK_BOOTTIME, the
// time since the boot including any suspend; ok is false where either
// cannot be read.
func (System) Boot() (id string, sinceBoot time.Duration, ok bool) {
	id = bootID()
	if id == "" {
		return "", 0, false
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "", 0, false
	}
	return id, time.Duration(ts.Nano()), true
}
