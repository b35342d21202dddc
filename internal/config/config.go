// Package config reads the checkpoint's configuration file (TOML, see
// configs/checkpoint.toml), fills in defaults and checks it. checkpointd
// imports it.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the checkpoint's configuration.
type Config struct {
	// Name identifies this checkpoint in logs and, later, to the authority.
	Name string `toml:"name"`

	Trust   Trust   `toml:"trust"`
	Camera  Camera  `toml:"camera"`
	Store   Store   `toml:"store"`
	Sync    Sync    `toml:"sync"`
	Clock   Clock   `toml:"clock"`
	Metrics Metrics `toml:"metrics"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen serves /metrics on this host:port; empty: not served.
	Listen string `toml:"listen"`
}

// Store says where the checkpoint keeps its state.
type Store struct {
	Path string `toml:"path"` // the database file
	// DiskLowMB raises the disk alarm below this much free space.
	DiskLowMB int `toml:"disk_low_mb"`
	// Retention keeps events this long after the authority acknowledged
	// them; unacknowledged events are never deleted.
	Retention Duration `toml:"retention"`
}

// Sync configures the link to the authority; without an authority the
// checkpoint works alone from the files in [trust].
type Sync struct {
	Authority   string   `toml:"authority"`    // base URL
	DeviceKey   string   `toml:"device_key"`   // created on first start if missing
	EnrollToken string   `toml:"enroll_token"` // one-time token from the authority's operator
	Interval    Duration `toml:"interval"`
	Batch       int      `toml:"batch"` // events per upload; 0: 5,000
	// MaxAnchorRTT is the longest round trip of a status call that may
	// anchor the clock; a slower answer leaves the previous anchor.
	MaxAnchorRTT Duration `toml:"max_anchor_rtt"`
	// CAFile names the certificates (PEM) to trust for an https
	// authority instead of the system's: its own certificate authority, or
	// its certificate itself.
	CAFile string `toml:"ca_file"`
}

// Clock configures how far the checkpoint trusts its own clock.
type Clock struct {
	// UnsyncedUncertainty is the system clock's uncertainty before the
	// first sync (boxes run NTP when they have a network); negative: do
	// not trust an unsynced clock at all.
	UnsyncedUncertainty Duration `toml:"unsynced_uncertainty"`
}

// Trust says where the pinned root key and the signed lists are.
type Trust struct {
	RootKey     string `toml:"root_key"`    // the pinned root public key (PEM)
	TrustList   string `toml:"trust_list"`  // signed trust list
	Revocations string `toml:"revocations"` // signed revocation list; empty: none yet
	Policy      string `toml:"policy"`      // policy file (JSON); empty: the built-in policy
}

// Camera configures the video source and the scanner.
type Camera struct {
	Device   string   `toml:"device"` // /dev/video0, 0, rtsp://..., a video file or an image folder
	Width    int      `toml:"width"`
	Height   int      `toml:"height"`
	FPS      float64  `toml:"fps"`
	Exposure float64  `toml:"exposure"` // 0: automatic
	Workers  int      `toml:"workers"`  // decoders in parallel; 0: one per CPU
	Forget   Duration `toml:"forget"`   // how long a code must be out of view to count again
	Budget   Duration `toml:"budget"`   // decoding time per frame
	// Pace plays a video file or folder at this many frames a second, as
	// a camera; 0 reads it as fast as it decodes. For tests and demos.
	Pace float64 `toml:"pace"`
}

// Duration is a time.Duration written as Go duration text ("3s").
type Duration time.Duration

// UnmarshalText reads Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Defaults are the values of what a file leaves out.
func Defaults() Config {
	return Config{
		Name: "checkpoint",
		Camera: Camera{
			Device: "/dev/video0", Width: 1280, Height: 720, FPS: 30,
			Forget: Duration(3 * time.Second), Budget: Duration(60 * time.Millisecond),
		},
		Store: Store{Path: "/var/lib/checkpoint/checkpoint.db", DiskLowMB: 256, Retention: Duration(30 * 24 * time.Hour)},
		Sync: Sync{DeviceKey: "/var/lib/checkpoint/device.key", Interval: Duration(30 * time.Second),
			MaxAnchorRTT: Duration(4 * time.Second)},
		Clock: Clock{UnsyncedUncertainty: Duration(time.Second)},
	}
}

// Load reads and checks a configuration file. Relative paths in it are
// taken from the file's folder.
func Load(path string) (Config, error) {
	c := Defaults()
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return Config{}, fmt.Errorf("config %s: unknown setting %q", path, undecoded[0].String())
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.Trust.RootKey, &c.Trust.TrustList, &c.Trust.Revocations, &c.Trust.Policy,
		&c.Store.Path, &c.Sync.DeviceKey, &c.Sync.CAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	if c.Camera.Device != "" && !filepath.IsAbs(c.Camera.Device) {
		if _, err := os.Stat(filepath.Join(base, c.Camera.Device)); err == nil {
			c.Camera.Device = filepath.Join(base, c.Camera.Device)
		}
	}
	return c, c.Check()
}

// Check reports the first thing wrong with c.
func (c Config) Check() error {
	switch {
	case c.Trust.RootKey == "":
		return errors.New("config: trust.root_key is required: the checkpoint must pin a root key")
	case c.Trust.TrustList == "" && c.Sync.Authority == "":
		return errors.New("config: trust.trust_list is required when there is no sync.authority to get it from")
	case c.Camera.Device == "":
		return errors.New("config: camera.device is required")
	case c.Camera.Workers < 0 || c.Camera.FPS < 0 || c.Camera.Pace < 0:
		return errors.New("config: camera numbers must not be negative")
	case c.Store.Path == "":
		return errors.New("config: store.path is required: the checkpoint must record its events")
	case c.Sync.Authority != "" && c.Sync.DeviceKey == "":
		return errors.New("config: sync.device_key is required with sync.authority")
	case c.Sync.MaxAnchorRTT <= 0:
		return errors.New("config: sync.max_anchor_rtt must be positive")
	}
	return nil
}
