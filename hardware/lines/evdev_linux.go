package lines

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// eviocgrab is EVIOCGRAB, _IOW('E', 0x90, int): grab (1) or release (0)
// an input device.
const eviocgrab = 1<<30 | 4<<16 | 'E'<<8 | 0x90

// OpenEvdev opens a Linux input device, and with grab takes it for this
// reader alone, so that its keystrokes reach no console or other program
// until it is closed. Closing it ends a blocked read.
func OpenEvdev(device string, grab bool) (io.ReadCloser, error) {
	f, err := os.Open(device)
	if err != nil {
		return nil, err
	}
	if !grab {
		return f, nil
	}
	if err := setGrab(f, 1); err != nil {
		f.Close()
		return nil, fmt.Errorf("grab %s: %w", device, err)
	}
	return grabbed{f}, nil
}

// grabbed is an input device this process has grabbed.
type grabbed struct{ *os.File }

// Close releases the grab and closes the device.
func (g grabbed) Close() error {
	setGrab(g.File, 0) // the kernel releases it on close anyway
	return g.File.Close()
}

// setGrab issues EVIOCGRAB without File.Fd, which would make reads
// blocking and so deaf to Close.
func setGrab(f *os.File, on int) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	if err := conn.Control(func(fd uintptr) { ioctlErr = unix.IoctlSetInt(int(fd), eviocgrab, on) }); err != nil {
		return err
	}
	return ioctlErr
}
