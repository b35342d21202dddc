// Package hardwaretest has fakes of the checkpoint's devices: pins, serial
// ports, thermometers, line readers. The hardware packages' and the
// daemon's tests import it.
package hardwaretest
