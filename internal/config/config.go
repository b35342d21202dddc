// Package config reads the checkpoint's configuration file (TOML, see
// configs/checkpoint.toml), fills in defaults and checks it. checkpointd
// (internal/daemon) imports it.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/checkpointd/checkpoint/internal/passhash"
)

// Config is the checkpoint's configuration.
type Config struct {
	// Name identifies this checkpoint in logs and, later, to the authority.
	Name string `toml:"name"`

	Trust  Trust  `toml:"trust"`
	Camera Camera `toml:"camera"`
	// Lanes are the lanes this box serves, each with its camera and
	// devices. Without any, the box is one lane, named after it, with the
	// camera of [camera] and no devices. A lane's camera settings default
	// to [camera]'s.
	Lanes   []Lane  `toml:"lane"`
	Store   Store   `toml:"store"`
	Sync    Sync    `toml:"sync"`
	Clock   Clock   `toml:"clock"`
	Metrics Metrics `toml:"metrics"`
	Screen  Screen  `toml:"screen"`
	Voice   Voice   `toml:"voice"`
	API     API     `toml:"api"`
}

// API configures the supervisors' local API (internal/localapi), which
// checkpointctl talks to: on a Unix socket on the box, and over HTTPS on
// the local network when Listen is set. It is served only when at least
// one supervisor is configured.
type API struct {
	// Socket is the Unix socket's path; empty: no socket.
	Socket string `toml:"socket"`
	// Group is the group the socket belongs to (mode 0660): its members,
	// root and the daemon's own user may connect. When the group does not
	// exist the socket is the daemon's user's alone.
	Group string `toml:"group"`
	// Listen serves the API over HTTPS on this host:port (":8443");
	// empty: not served. The certificate is self-signed, made at first
	// start; clients pin its SHA-256 fingerprint.
	Listen string `toml:"listen"`
	// TLSCert and TLSKey are the certificate's files; empty: api.crt and
	// api.key beside the store's database.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// LockAfter wrong passwords in a row lock an account for LockFor.
	LockAfter int      `toml:"lock_after"`
	LockFor   Duration `toml:"lock_for"`
	// MaxConns bounds the HTTPS connections open at once.
	MaxConns int `toml:"max_conns"`
	// Supervisors are the accounts that may read the log.
	Supervisors []Supervisor `toml:"supervisor"`
}

// Supervisor is an account of the local API.
type Supervisor struct {
	Name string `toml:"name"`
	// Password is the Argon2id hash of the password (checkpointctl passwd
	// makes one). There is no default password.
	Password string `toml:"password"`
	// BoxKey is the supervisor's X25519 public key (checkpointctl keygen):
	// when set, the exports this supervisor asks for leave the box
	// encrypted to it. Empty: in the clear.
	BoxKey string `toml:"box_key"`
}

// Voice says where the spoken prompts of the lanes whose voice is on are:
// one WAV file a prompt (internal/voice).
type Voice struct {
	Dir string `toml:"dir"`
}

// LaneVoice turns a lane's spoken prompts on (stations; village gates keep
// them off), on an ALSA device.
type LaneVoice struct {
	Enabled bool   `toml:"enabled"`
	Device  string `toml:"device"` // for aplay -D; empty: the default
}

// Screen configures the guard's and the passengers' screen, a web page
// checkpointd serves (docs/gate.md).
type Screen struct {
	// Listen serves it on this host:port; empty: not served.
	Listen string `toml:"listen"`
	// With a certificate and its key the screen is served over TLS, and
	// guards may sign in and act from other machines; without, only from
	// this box.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Guards who may sign in: a name and the Argon2id hash of a PIN
	// (checkpointctl passwd makes one).
	Guards []Guard `toml:"guard"`
	// LockAfter wrong PINs in a row lock signing in for LockFor.
	LockAfter int      `toml:"lock_after"`
	LockFor   Duration `toml:"lock_for"`
}

// Guard is a guard who may sign in on the screen.
type Guard struct {
	Name string `toml:"name"`
	PIN  string `toml:"pin"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen serves /metrics on this host:port; empty: not served.
	Listen string `toml:"listen"`
}

// Store says where the checkpoint keeps its state.
type Store struct {
	Path string `toml:"path"` // the database file
	// Key encrypts the fields kept encrypted at rest (masked names); made
	// on first start, readable by the daemon's user only. Empty: store.key
	// beside the database.
	Key string `toml:"key"`
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
	// Loop plays a video file or folder again from the start at its end,
	// opening it anew (a file replaced meanwhile is read as the new one).
	Loop bool `toml:"loop"`
}

// Lane is one lane: its camera and the devices at it.
type Lane struct {
	Name        string      `toml:"name"`
	Camera      Camera      `toml:"camera"`
	Thermometer Thermometer `toml:"thermometer"`
	IDReader    LineDevice  `toml:"id_reader"`
	Scanner     LineDevice  `toml:"scanner"` // a handheld QR scanner
	Gate        Gate        `toml:"gate"`
	Voice       LaneVoice   `toml:"voice"`
}

// Thermometer is a lane's infrared thermometer on a serial line.
type Thermometer struct {
	Kind     string   `toml:"kind"`     // "serial"; empty: none (the guard enters readings)
	Port     string   `toml:"port"`     // /dev/ttyUSB0
	Baud     int      `toml:"baud"`     // 0: 9600
	Protocol string   `toml:"protocol"` // line (default), pattern, frame
	Pattern  string   `toml:"pattern"`  // a regexp with (?P<body>...) and maybe (?P<amb>...)
	Query    string   `toml:"query"`    // sent to ask for a reading, with Go escapes ("M\r\n"); empty: none
	Silence  Duration `toml:"silence"`
}

// LineDevice is an ID-card reader or a handheld scanner that types a line
// per read.
type LineDevice struct {
	Kind   string `toml:"kind"`   // "serial" or "evdev"; empty: none
	Device string `toml:"device"` // /dev/ttyUSB1, or /dev/input/event3 (or its by-id link)
	Baud   int    `toml:"baud"`   // serial; 0: 9600
}

// Gate is a lane's gate relay, lamps, buzzer and fire-alarm input.
type Gate struct {
	Kind string `toml:"kind"` // "gpio", or "simulated" (logs what it would do); empty: none
	Chip string `toml:"chip"` // gpiochip0
	// Line offsets on the chip; left out: not wired. The relay is
	// required for a gpio gate.
	Relay     *int `toml:"relay"`
	Green     *int `toml:"green"`
	Red       *int `toml:"red"`
	Buzzer    *int `toml:"buzzer"`
	FireAlarm *int `toml:"fire_alarm"`
	ActiveLow bool `toml:"active_low"`
	// Pulse is how long the relay is energised for a pass; Lamp how long a
	// lamp stays lit; Buzz how long the buzzer sounds on a refusal.
	Pulse Duration `toml:"pulse"`
	Lamp  Duration `toml:"lamp"`
	Buzz  Duration `toml:"buzz"`
	// Fail is where the gate is left when checkpointd stops: "closed"
	// (fail-secure) or "open" (fail-safe, for an escape route).
	Fail string `toml:"fail"`
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
			Forget: Duration(3 * time.Second), Budget: Duration(25 * time.Millisecond),
		},
		Store: Store{Path: "/var/lib/checkpoint/checkpoint.db", DiskLowMB: 256, Retention: Duration(14 * 24 * time.Hour)},
		Sync: Sync{DeviceKey: "/var/lib/checkpoint/device.key", Interval: Duration(30 * time.Second),
			MaxAnchorRTT: Duration(4 * time.Second)},
		Clock: Clock{UnsyncedUncertainty: Duration(time.Second)},
		Voice: Voice{Dir: "/usr/share/checkpoint/voice"},
		API: API{Socket: "/run/checkpoint/api.sock", Group: "checkpoint", LockAfter: 5, LockFor: Duration(5 * time.Minute),
			MaxConns: 16},
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
		&c.Store.Path, &c.Store.Key, &c.Sync.DeviceKey, &c.Sync.CAFile, &c.Screen.TLSCert, &c.Screen.TLSKey, &c.Voice.Dir,
		&c.API.Socket, &c.API.TLSCert, &c.API.TLSKey} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for i := range c.API.Supervisors {
		if p := &c.API.Supervisors[i].BoxKey; *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	if c.Camera.Device != "" && !filepath.IsAbs(c.Camera.Device) {
		if _, err := os.Stat(filepath.Join(base, c.Camera.Device)); err == nil {
			c.Camera.Device = filepath.Join(base, c.Camera.Device)
		}
	}
	if c.Store.Key == "" && c.Store.Path != "" {
		c.Store.Key = filepath.Join(filepath.Dir(c.Store.Path), "store.key")
	}
	c.API.TLSCert, c.API.TLSKey = c.APICertFiles()
	switch {
	case len(c.Lanes) == 0:
		c.Lanes = []Lane{{Name: c.Name, Camera: c.Camera}}
	case len(c.Lanes) == 1 && c.Lanes[0].Camera.Device == "":
		c.Lanes[0].Camera.Device = c.Camera.Device
	}
	for i := range c.Lanes {
		c.Lanes[i].from(c.Camera, base)
	}
	return c, c.Check()
}

// from fills in what a lane leaves out: the camera settings of [camera]
// (but its device), and device paths relative to the file's folder.
func (l *Lane) from(cam Camera, base string) {
	c := &l.Camera
	if c.Width == 0 && c.Height == 0 {
		c.Width, c.Height = cam.Width, cam.Height
	}
	for _, f := range []struct{ v, d *float64 }{{&c.FPS, &cam.FPS}, {&c.Exposure, &cam.Exposure}, {&c.Pace, &cam.Pace}} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	if c.Workers == 0 {
		c.Workers = cam.Workers
	}
	if c.Forget == 0 {
		c.Forget = cam.Forget
	}
	if c.Budget == 0 {
		c.Budget = cam.Budget
	}
	c.Loop = c.Loop || cam.Loop
	if c.Device != "" && !filepath.IsAbs(c.Device) {
		if _, err := os.Stat(filepath.Join(base, c.Device)); err == nil {
			c.Device = filepath.Join(base, c.Device)
		}
	}
	if l.Gate.Fail == "" {
		l.Gate.Fail = "closed"
	}
}

// APICertFiles returns the local API's certificate and key files: as
// configured, or api.crt and api.key beside the store's database.
func (c Config) APICertFiles() (cert, key string) {
	cert, key = c.API.TLSCert, c.API.TLSKey
	dir := filepath.Dir(c.Store.Path)
	if cert == "" && key == "" && c.Store.Path != "" {
		cert, key = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	}
	return cert, key
}

// Check reports the first thing wrong with c.
func (c Config) Check() error {
	switch {
	case c.Trust.RootKey == "":
		return errors.New("config: trust.root_key is required: the checkpoint must pin a root key")
	case c.Trust.TrustList == "" && c.Sync.Authority == "":
		return errors.New("config: trust.trust_list is required when there is no sync.authority to get it from")
	case c.Camera.Workers < 0 || c.Camera.FPS < 0 || c.Camera.Pace < 0:
		return errors.New("config: camera numbers must not be negative")
	case c.Store.Path == "":
		return errors.New("config: store.path is required: the checkpoint must record its events")
	case c.Sync.Authority != "" && c.Sync.DeviceKey == "":
		return errors.New("config: sync.device_key is required with sync.authority")
	case c.Sync.MaxAnchorRTT <= 0:
		return errors.New("config: sync.max_anchor_rtt must be positive")
	case (c.Screen.TLSCert == "") != (c.Screen.TLSKey == ""):
		return errors.New("config: screen.tls_cert and screen.tls_key go together")
	case c.Screen.LockAfter < 0 || c.Screen.LockFor < 0:
		return errors.New("config: screen.lock_after and screen.lock_for must not be negative")
	}
	guards := map[string]bool{}
	for i, g := range c.Screen.Guards {
		if g.Name == "" || g.PIN == "" {
			return fmt.Errorf("config: screen.guard %d: name and pin are required", i+1)
		}
		if guards[g.Name] {
			return fmt.Errorf("config: screen.guard %d: name %q is used twice", i+1, g.Name)
		}
		guards[g.Name] = true
	}
	if err := c.API.check(); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, l := range c.Lanes {
		if err := l.check(); err != nil {
			return fmt.Errorf("config: lane %d (%q): %w", i+1, l.Name, err)
		}
		if l.Voice.Enabled && c.Voice.Dir == "" {
			return fmt.Errorf("config: lane %d (%q): voice.enabled needs [voice] dir, the folder of the prompts", i+1, l.Name)
		}
		if names[l.Name] {
			return fmt.Errorf("config: lane %d: name %q is used twice", i+1, l.Name)
		}
		names[l.Name] = true
	}
	return nil
}

// check reports the first thing wrong with the [api] section.
func (a API) check() error {
	switch {
	case (a.TLSCert == "") != (a.TLSKey == ""):
		return errors.New("config: api.tls_cert and api.tls_key go together")
	case a.LockAfter < 0 || a.LockFor < 0 || a.MaxConns < 0:
		return errors.New("config: api.lock_after, api.lock_for and api.max_conns must not be negative")
	case a.Listen != "" && len(a.Supervisors) == 0:
		return errors.New("config: api.listen needs at least one [[api.supervisor]]")
	}
	names := map[string]bool{}
	for i, s := range a.Supervisors {
		switch {
		case s.Name == "":
			return fmt.Errorf("config: api.supervisor %d: name is required", i+1)
		case strings.ContainsAny(s.Name, ": \t\r\n") || len(s.Name) > 64:
			return fmt.Errorf("config: api.supervisor %d: a name has at most 64 characters, without spaces or colons", i+1)
		case names[s.Name]:
			return fmt.Errorf("config: api.supervisor %d: name %q is used twice", i+1, s.Name)
		case s.Password == "":
			return fmt.Errorf("config: api.supervisor %q: password is required (there is no default password): "+
				"make its hash with checkpointctl passwd", s.Name)
		}
		if err := passhash.Check(s.Password); err != nil {
			return fmt.Errorf("config: api.supervisor %q: password: %w (make one with checkpointctl passwd)", s.Name, err)
		}
		names[s.Name] = true
	}
	return nil
}

// check reports the first thing wrong with a lane, naming its key.
func (l Lane) check() error {
	switch {
	case l.Name == "":
		return errors.New("lane.name is required")
	case l.Camera.Device == "":
		return errors.New("camera.device is required")
	case l.Camera.Workers < 0 || l.Camera.FPS < 0 || l.Camera.Pace < 0:
		return errors.New("camera numbers must not be negative")
	}
	switch l.Thermometer.Kind {
	case "":
	case "serial":
		if l.Thermometer.Port == "" {
			return errors.New("thermometer.port is required for a serial thermometer")
		}
		switch l.Thermometer.Protocol {
		case "", "line", "frame":
		case "pattern":
			if l.Thermometer.Pattern == "" {
				return errors.New("thermometer.pattern is required with protocol \"pattern\"")
			}
		default:
			return fmt.Errorf("thermometer.protocol %q is not line, pattern or frame", l.Thermometer.Protocol)
		}
	default:
		return fmt.Errorf("thermometer.kind %q is not serial (or empty for none)", l.Thermometer.Kind)
	}
	for key, d := range map[string]LineDevice{"id_reader": l.IDReader, "scanner": l.Scanner} {
		switch d.Kind {
		case "":
		case "serial", "evdev":
			if d.Device == "" {
				return fmt.Errorf("%s.device is required for a %s %s", key, d.Kind, key)
			}
		default:
			return fmt.Errorf("%s.kind %q is not serial or evdev (or empty for none)", key, d.Kind)
		}
	}
	g := l.Gate
	switch g.Kind {
	case "", "simulated":
	case "gpio":
		if g.Chip == "" {
			return errors.New("gate.chip is required for a gpio gate")
		}
		if g.Relay == nil {
			return errors.New("gate.relay is required for a gpio gate")
		}
		for key, v := range map[string]*int{"relay": g.Relay, "green": g.Green, "red": g.Red, "buzzer": g.Buzzer, "fire_alarm": g.FireAlarm} {
			if v != nil && *v < 0 {
				return fmt.Errorf("gate.%s must be a line offset, 0 or more", key)
			}
		}
	default:
		return fmt.Errorf("gate.kind %q is not gpio or simulated (or empty for none)", g.Kind)
	}
	if g.Fail != "closed" && g.Fail != "open" {
		return fmt.Errorf("gate.fail %q is not closed or open", g.Fail)
	}
	if g.Pulse < 0 || g.Lamp < 0 {
		return errors.New("gate.pulse and gate.lamp must not be negative")
	}
	return nil
}
