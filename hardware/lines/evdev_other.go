//go:build !linux

package lines

import (
	"errors"
	"io"
)

// OpenEvdev fails outside Linux, which alone has input devices.
func OpenEvdev(device string, grab bool) (io.ReadCloser, error) {
	return nil, errors.New("input devices need Linux")
}
