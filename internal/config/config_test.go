package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "checkpoint.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../../configs/checkpoint.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "gate-3" || c.Camera.Device != "/dev/video0" || c.Camera.Width != 1280 ||
		time.Duration(c.Camera.Forget) != 3*time.Second || c.Trust.RootKey != "/etc/checkpoint/root.pub" || c.Metrics.Listen != "127.0.0.1:9731" ||
		time.Duration(c.Sync.MaxAnchorRTT) != 4*time.Second {
		t.Errorf("loaded %+v", c)
	}
}

func TestDefaultsAndRelativePaths(t *testing.T) {
	p := write(t, "[trust]\nroot_key = \"keys/root.pub\"\ntrust_list = \"/abs/trust.cbor\"\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Trust.RootKey != filepath.Join(filepath.Dir(p), "keys/root.pub") || c.Trust.TrustList != "/abs/trust.cbor" {
		t.Errorf("paths %+v", c.Trust)
	}
	if c.Camera.FPS != 30 || time.Duration(c.Camera.Budget) != 25*time.Millisecond || c.Name != "checkpoint" ||
		time.Duration(c.Sync.MaxAnchorRTT) != 4*time.Second {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestRejects(t *testing.T) {
	for text, want := range map[string]string{
		"[trust]\ntrust_list = \"t\"\n":                                                     "root_key",
		"[trust]\nroot_key = \"r\"\n":                                                       "trust_list",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[camera]\nworkers = -1\n":           "negative",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[camera]\nforgett = \"3s\"\n":       "forgett",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[camera]\nforget = \"soon\"\n":      "soon",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[sync]\nmax_anchor_rtt = \"0s\"\n":  "max_anchor_rtt",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[sync]\nmax_anchor_rtt = \"-1s\"\n": "max_anchor_rtt",
		"[trust\n": "expected", // TOML's own complaint, not only "config"
	} {
		_, err := Load(write(t, text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want one mentioning %q", text, err, want)
		}
	}
}

func TestMaxAnchorRTT(t *testing.T) {
	c, err := Load(write(t, "[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[sync]\nmax_anchor_rtt = \"1500ms\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(c.Sync.MaxAnchorRTT); got != 1500*time.Millisecond {
		t.Errorf("max_anchor_rtt %v, want 1.5s", got)
	}
}

const trusted = "[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n"

// TestLanes: a box with two lanes, each with its devices; what a lane
// leaves out comes from [camera]; without lanes the box is one lane.
func TestLanes(t *testing.T) {
	c, err := Load(write(t, trusted+`
[camera]
width = 640
height = 480
budget = "40ms"

[[lane]]
name = "east"
camera.device = "/dev/video0"
thermometer = { kind = "serial", port = "/dev/ttyUSB0", protocol = "pattern", pattern = 'T=(?P<body>[0-9.]+)', query = "M\r\n" }
id_reader = { kind = "evdev", device = "/dev/input/event3" }
gate = { kind = "gpio", chip = "gpiochip0", relay = 17, red = 22, pulse = "600ms", fail = "open" }

[[lane]]
name = "west"
camera = { device = "/dev/video1", width = 1280, height = 720, loop = true }
scanner = { kind = "serial", device = "/dev/ttyACM0" }
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Lanes) != 2 {
		t.Fatalf("%d lanes", len(c.Lanes))
	}
	e, w := c.Lanes[0], c.Lanes[1]
	if e.Camera.Width != 640 || time.Duration(e.Camera.Budget) != 40*time.Millisecond || e.Thermometer.Query != "M\r\n" ||
		e.IDReader.Kind != "evdev" || *e.Gate.Relay != 17 || *e.Gate.Red != 22 || e.Gate.Green != nil || e.Gate.Fail != "open" ||
		time.Duration(e.Gate.Pulse) != 600*time.Millisecond {
		t.Errorf("east %+v", e)
	}
	if w.Camera.Device != "/dev/video1" || w.Camera.Width != 1280 || !w.Camera.Loop || e.Camera.Loop || w.Scanner.Device != "/dev/ttyACM0" || w.Gate.Kind != "" || w.Gate.Fail != "closed" {
		t.Errorf("west %+v", w)
	}

	c, err = Load(write(t, "name = \"gate-9\"\n"+trusted))
	if err != nil || len(c.Lanes) != 1 || c.Lanes[0].Name != "gate-9" || c.Lanes[0].Camera.Device != "/dev/video0" {
		t.Errorf("no lanes: %+v %v", c.Lanes, err)
	}
}

// TestLaneRejects: a device wrongly configured is a one-line error that
// names the lane and the key.
func TestLaneRejects(t *testing.T) {
	lane := func(body string) string {
		return trusted + "[[lane]]\nname = \"east\"\ncamera.device = \"/dev/video0\"\n" + body
	}
	for text, want := range map[string]string{
		lane("thermometer.kind = \"infrared\"\n"):                                                                  "thermometer.kind",
		lane("thermometer.kind = \"serial\"\n"):                                                                    "thermometer.port",
		lane("thermometer = { kind = \"serial\", port = \"p\", protocol = \"morse\" }\n"):                          "thermometer.protocol",
		lane("thermometer = { kind = \"serial\", port = \"p\", protocol = \"pattern\" }\n"):                        "thermometer.pattern",
		lane("id_reader.kind = \"bluetooth\"\n"):                                                                   "id_reader.kind",
		lane("scanner.kind = \"evdev\"\n"):                                                                         "scanner.device",
		lane("gate.kind = \"relay\"\n"):                                                                            "gate.kind",
		lane("gate = { kind = \"gpio\", relay = 4 }\n"):                                                            "gate.chip",
		lane("gate = { kind = \"gpio\", chip = \"gpiochip0\" }\n"):                                                 "gate.relay",
		lane("gate = { kind = \"gpio\", chip = \"gpiochip0\", relay = -2 }\n"):                                     "gate.relay",
		lane("gate.fail = \"ajar\"\n"):                                                                             "gate.fail",
		lane("gate.colour = \"red\"\n"):                                                                            "gate.colour",
		trusted + "[[lane]]\nname = \"a\"\ncamera.device = \"x\"\n[[lane]]\nname = \"a\"\ncamera.device = \"y\"\n": "used twice",
		trusted + "[[lane]]\nname = \"a\"\ncamera.device = \"x\"\n[[lane]]\nname = \"b\"\n":                        "camera.device",
	} {
		_, err := Load(write(t, text))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("config %q: error %v, want one line mentioning %q", text, err, want)
		}
	}
}

// TestVoice: a lane's voice is off unless turned on; the prompts' folder
// defaults to the installed one and is taken from the file's folder when
// relative; a lane with voice needs the folder.
func TestVoice(t *testing.T) {
	c, err := Load(write(t, trusted))
	if err != nil || c.Lanes[0].Voice.Enabled || c.Voice.Dir != "/usr/share/checkpoint/voice" {
		t.Errorf("defaults: %+v %+v %v", c.Lanes[0].Voice, c.Voice, err)
	}
	p := write(t, trusted+`
[voice]
dir = "prompts"

[[lane]]
name = "east"
camera.device = "/dev/video0"
voice = { enabled = true, device = "plughw:1,0" }

[[lane]]
name = "west"
camera.device = "/dev/video1"
`)
	c, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Voice.Dir != filepath.Join(filepath.Dir(p), "prompts") || !c.Lanes[0].Voice.Enabled || c.Lanes[0].Voice.Device != "plughw:1,0" ||
		c.Lanes[1].Voice.Enabled {
		t.Errorf("voice %+v, lanes %+v %+v", c.Voice, c.Lanes[0].Voice, c.Lanes[1].Voice)
	}
	for text, want := range map[string]string{
		trusted + "[voice]\ndir = \"\"\n[[lane]]\nname = \"east\"\ncamera.device = \"x\"\nvoice.enabled = true\n": "voice.enabled",
		trusted + "[[lane]]\nname = \"east\"\ncamera.device = \"x\"\nvoice.volume = 3\n":                          "lane.voice.volume",
	} {
		_, err := Load(write(t, text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want one mentioning %q", text, err, want)
		}
	}
	if _, err := Load(write(t, trusted+"[voice]\ndir = \"\"\n")); err != nil {
		t.Errorf("no folder, no lane with voice: %v", err)
	}
}

// TestAPI: the supervisors' API: defaults, paths from the file's folder,
// the certificate beside the database; a supervisor needs a name and a
// password hash that can be checked: there is no default password.
func TestAPI(t *testing.T) {
	c, err := Load(write(t, trusted))
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Socket != "/run/checkpoint/api.sock" || c.API.Group != "checkpoint" || c.API.Listen != "" || len(c.API.Supervisors) != 0 ||
		c.API.LockAfter != 5 || time.Duration(c.API.LockFor) != 5*time.Minute || c.API.TLSCert != "/var/lib/checkpoint/api.crt" ||
		c.API.TLSKey != "/var/lib/checkpoint/api.key" {
		t.Errorf("defaults %+v", c.API)
	}
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	p := write(t, trusted+`
[store]
path = "data/checkpoint.db"

[api]
socket = "run/api.sock"
listen = ":8443"

[[api.supervisor]]
name = "wang"
password = "`+hash+`"
box_key = "keys/wang.pub"
`)
	if c, err = Load(p); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if c.API.Socket != filepath.Join(dir, "run/api.sock") || c.API.TLSCert != filepath.Join(dir, "data/api.crt") ||
		c.API.Supervisors[0].BoxKey != filepath.Join(dir, "keys/wang.pub") || c.API.Listen != ":8443" {
		t.Errorf("paths %+v", c.API)
	}
	sup := func(body string) string { return trusted + "[[api.supervisor]]\n" + body }
	for text, want := range map[string]string{
		sup("name = \"wang\"\n"):                                 "no default password",
		sup("name = \"wang\"\npassword = \"hunter2\"\n"):         "checkpointctl passwd",
		sup("password = \"" + hash + "\"\n"):                     "name is required",
		sup("name = \"wang li\"\npassword = \"" + hash + "\"\n"): "without spaces",
		sup("name = \"w\"\npassword = \""+hash+"\"\n") + sup("name = \"w\"\npassword = \"" + hash + "\"\n")[len(trusted):]: "used twice",
		trusted + "[api]\nlisten = \":8443\"\n": "supervisor",
		trusted + "[api]\nlock_after = -1\n":    "lock_after",
		trusted + "[api]\ntls_cert = \"c\"\n":   "tls_key",
	} {
		_, err := Load(write(t, text))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("config %q: error %v, want one mentioning %q", text, err, want)
		}
	}
}

func TestScreenRejects(t *testing.T) {
	guard := func(name string) string { return "[[screen.guard]]\nname = \"" + name + "\"\npin = \"h\"\n" }
	for text, want := range map[string]string{
		trusted + "[screen]\ntls_cert = \"c\"\n":       "go together",
		trusted + "[screen]\nlock_after = -1\n":        "negative",
		trusted + "[[screen.guard]]\nname = \"w\"\n":   "pin are required",
		trusted + guard("w") + guard("v") + guard("w"): "guard 3: name \"w\" is used twice",
	} {
		_, err := Load(write(t, text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want one mentioning %q", text, err, want)
		}
	}
}
