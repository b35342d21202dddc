// Package hardware holds what the checkpoint's devices deliver and the
// drivers that read and drive them, one package per kind of device:
//
//   - thermometer: infrared thermometers on a serial line (a text line per
//     reading, a pattern, or a binary frame with a checksum);
//   - lines: ID-card readers and handheld QR scanners that type one line
//     per read, on a serial line or as a USB keyboard (Linux evdev);
//   - gate: the gate relay, the lamps, the buzzer and the fire-alarm input,
//     on output and input pins; gpio drives those pins on a Linux GPIO
//     character device.
//
// The interfaces a device is used through are small and live with their
// users (the passage and the daemon); the drivers here return concrete
// types. hardwaretest has hand-written fakes of the pins, the serial lines
// and the devices, for machines without any of them. The daemon imports
// the drivers; the passage imports only the types of this package.
package hardware

import "time"

// Reading is one temperature reading as a thermometer gave it: never
// corrected, compensated or rounded.
type Reading struct {
	Body       float64   // °C
	Ambient    float64   // °C, when HasAmbient
	HasAmbient bool      // the device gave the ambient temperature too
	Source     string    // the device's name, e.g. "lane-1/thermometer", or "guard"
	At         time.Time // when it arrived
}

// Line is one read of a line device: an ID number from a card reader, or
// the text of a code from a handheld scanner, without its line ending.
type Line struct {
	Text   string
	Source string // the device's name
	At     time.Time
}
