// Package hardware will hold the small interfaces of the checkpoint's
// devices and their Linux drivers: the thermometer (serial line or guard
// entry), the gate relay and lights (GPIO character device), the ID-card
// reader and handheld scanners (serial or keyboard-wedge lines), each with a
// hand-written fake. The daemon will import it.
package hardware
