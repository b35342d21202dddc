package daemon

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/checkpointd/checkpoint/hardware/hardwaretest"
	"github.com/checkpointd/checkpoint/internal/browser"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/passhash"
	"github.com/checkpointd/checkpoint/internal/trust"
)

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// page is a browser tab on a checkpoint's screen.
type page struct {
	t   *testing.T
	ctx context.Context
}

func newPage(t *testing.T) *page {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	bctx, stop, err := browser.New(ctx, 1280, 800)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &page{t: t, ctx: bctx}
}

func (p *page) open(url string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatal(err)
	}
}

// until waits for a JavaScript expression to be true on the page.
func (p *page) until(js, what string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		p.t.Fatalf("the page never showed %s: %v", what, err)
	}
}

// text returns the visible text of the first element matching sel.
func (p *page) text(sel string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`(document.querySelector(`+quote(sel)+`) || {innerText: ""}).innerText`))
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

// submit fills a form's fields and submits it.
func (p *page) submit(form string, fields map[string]string) {
	p.t.Helper()
	js := `(() => { const f = document.querySelector(` + quote(form) + `);`
	for sel, v := range fields {
		js += `f.querySelector(` + quote(sel) + `).value = ` + quote(v) + `;`
	}
	js += `f.requestSubmit(); return true })()`
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](js)); err != nil {
		p.t.Fatal(err)
	}
}

func quote(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'" }

// running starts a daemon on cfg and returns its stop function; the
// screen is up when it returns.
func running(t *testing.T, cfg config.Config, o Options) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(cfg, o).Run(ctx) }()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", cfg.Screen.Listen); err == nil {
			c.Close()
			break
		}
		if i == 500 {
			t.Fatal("the screen never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestScreenShowsPassages: the guard's page and the passenger's, in
// Chromium, show each passage as the lane decides it: the colour, the
// words, the masked name, the temperatures, the reasons.
func TestScreenShowsPassages(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	yellow := f.Present(f.Issue(f.Credential(func(c *credential.Credential) { c.Status = credential.Yellow; c.ID[0] = 40 })), f.Now)
	texts := append(codes(f, 2), yellow)
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": texts})
	lb.cfg.Screen.Listen = freeAddr(t)
	lb.cfg.Lanes[0].Camera.Pace = 4 // one person every 2.5 s of play: time to look at each
	lb.cfg.Lanes[0].Thermometer = config.Thermometer{Kind: "serial", Port: "therm", Query: "M\n"}
	lb.cfg.Lanes[0].Gate = config.Gate{Kind: "simulated", Fail: "closed"}
	readings := []string{"36.5", "38.2", "38.1", "36.6"}
	port := &scriptedThermometer{Port: hardwaretest.NewPort(), readings: readings}
	p := newPage(t)
	running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now), Devices: Devices{
		Serial: func(string, int) (io.ReadWriteCloser, error) { return port, nil },
	}})
	p.open("http://" + lb.cfg.Screen.Listen + "/")
	lane := `document.querySelector('#lane-east')`

	p.until(lane+` && `+lane+`.querySelector('.decision.green') != null`, "a pass in green")
	if got := p.text("#lane-east"); !strings.Contains(got, "通行") || !strings.Contains(got, "Pass") ||
		!strings.Contains(got, "张*丰") || !strings.Contains(got, "36.5°C") || !strings.Contains(got, "请核对身份证") ||
		!strings.Contains(got, "闸门已开") {
		t.Errorf("the pass shows %q", got)
	}
	p.until(lane+`.querySelector('.decision.red') != null`, "a fever refused in red")
	if got := p.text("#lane-east"); !strings.Contains(got, "禁止通行") || !strings.Contains(got, "发热") ||
		!strings.Contains(got, "38.2°C") || !strings.Contains(got, "38.1°C") || !strings.Contains(got, "闸门关闭") {
		t.Errorf("the fever shows %q", got)
	}
	if n, _ := chromedp.Run(p.ctx, chromedp.Evaluate[int](lane+`.querySelectorAll('.temps .fever').length`)); n != 2 {
		t.Errorf("%d readings marked as fevers, want 2", n)
	}
	p.until(lane+`.querySelector('.decision.yellow') != null`, "a yellow code sent to a second check")
	if got := p.text("#lane-east .decision"); !strings.Contains(got, "请人工核验") || !strings.Contains(got, "Second check") {
		t.Errorf("the second check shows %q", got)
	}
	if got := p.text("#lane-east .last"); strings.Count(got, "张*丰") != 3 {
		t.Errorf("the last passages: %q", got)
	}
}

// scriptedThermometer answers each query with the next reading.
type scriptedThermometer struct {
	*hardwaretest.Port
	readings []string
	n        int
}

func (s *scriptedThermometer) Write(b []byte) (int, error) {
	if s.n < len(s.readings) {
		s.Port.Feed(s.readings[s.n] + "\n")
		s.n++
	}
	return len(b), nil
}

// TestScreenStatus: the status line turns red on a stale revocation list
// and on the disk alarm; the passenger's page shows the idle request.
func TestScreenStatus(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": nil})
	lb.cfg.Screen.Listen = freeAddr(t)
	lb.cfg.Lanes[0].Camera.Device = "/dev/video-absent" // keeps the daemon running
	stale, err := trust.SignRevocations(&trust.Revocations{Version: 1, IssuedAt: f.Now.Add(-48 * time.Hour), Expires: f.Now.Add(-time.Hour)}, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lb.cfg.Trust.Revocations, stale, 0o644); err != nil {
		t.Fatal(err)
	}
	lb.cfg.Store.DiskLowMB = 1 << 30 // a petabyte: the alarm is raised
	p := newPage(t)
	running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now)})
	p.open("http://" + lb.cfg.Screen.Listen + "/")
	for _, key := range []string{"revocations", "disk", "east/camera"} {
		p.until(`(() => { const i = document.querySelector('.item[data-key="`+key+`"]'); return i != null && i.classList.contains('bad') })()`,
			key+" in red")
	}
	if got := p.text(`.item[data-key="clock"]`); !strings.Contains(got, "时钟") {
		t.Errorf("the clock item shows %q", got)
	}
	if bad, _ := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`document.querySelector('.item[data-key="clock"]').classList.contains('bad')`)); bad {
		t.Error("a trusted clock is shown in red")
	}
	p.open("http://" + lb.cfg.Screen.Listen + "/lane/east")
	p.until(`document.querySelector('#screen').classList.contains('grey') && document.querySelector('#zh').innerText === '请出示健康码'`,
		"the passenger's idle request")
}

// TestScreenReconnects: a page whose checkpointd restarts says so, and
// comes back by itself.
func TestScreenReconnects(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": nil})
	lb.cfg.Screen.Listen = freeAddr(t)
	lb.cfg.Lanes[0].Camera.Device = "/dev/video-absent"
	p := newPage(t)
	stop := running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now)})
	p.open("http://" + lb.cfg.Screen.Listen + "/")
	live := `document.querySelector('#conn').className === 'conn'`
	p.until(live, "the connection up")
	stop()
	p.until(`document.querySelector('#conn').classList.contains('down')`, "the connection down")
	running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now)})
	p.until(live, "the connection up again")
	if got := p.text("#lane-east h2"); !strings.Contains(got, "east") {
		t.Errorf("after reconnecting the lane shows %q", got)
	}
}

// TestScreenSignInLocked: a wrong PIN is refused; five in a row lock
// signing in, the right PIN too.
func TestScreenSignInLocked(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": nil})
	lb.cfg.Screen.Listen = freeAddr(t)
	lb.cfg.Lanes[0].Camera.Device = "/dev/video-absent"
	hash, err := passhash.Hash("2468")
	if err != nil {
		t.Fatal(err)
	}
	lb.cfg.Screen.Guards = []config.Guard{{Name: "王刚", PIN: hash}}
	p := newPage(t)
	running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now)})
	p.open("http://" + lb.cfg.Screen.Listen + "/")
	p.until(`document.querySelector('#conn').className === 'conn'`, "the connection up")
	signIn := func(pin string) {
		p.submit("#signin", map[string]string{"#guard-name": "王刚", "#guard-pin": pin})
	}
	message := func(has, what string) {
		p.until(`document.querySelector('#message').innerText.includes('`+has+`')`, what)
		chromedp.Run(p.ctx, chromedp.Evaluate[bool](`document.querySelector('#message').textContent = ''; true`))
	}
	signIn("0000")
	message("姓名或密码错误", "a wrong PIN refused")
	for i := 0; i < 4; i++ {
		signIn("1111")
		message("姓名或密码错误", "another wrong PIN refused")
	}
	signIn("2468")
	message("稍后再试", "signing in locked after five wrong PINs")
	if p.text("#guard") != "" {
		t.Error("a guard is signed in while signing in is locked")
	}
}

// TestScreenOverride: a guard signed in overrides a passage on the page;
// the override is recorded with the guard's name and reason.
func TestScreenOverride(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": codes(f, 1)})
	lb.cfg.Screen.Listen = freeAddr(t)
	lb.cfg.Lanes[0].Camera.Pace = 2 // the code stays up: time to act
	hash, err := passhash.Hash("2468")
	if err != nil {
		t.Fatal(err)
	}
	lb.cfg.Screen.Guards = []config.Guard{{Name: "李明", PIN: hash}}
	p := newPage(t)
	stop := running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now)})
	p.open("http://" + lb.cfg.Screen.Listen + "/")
	p.until(`document.querySelector('#conn').className === 'conn'`, "the connection up")
	p.submit("#signin", map[string]string{"#guard-name": "李明", "#guard-pin": "2468"})
	p.until(`document.querySelector('#guard').innerText === '李明' && !document.querySelector('#lane-east .actions').classList.contains('hidden')`,
		"李明 signed in, with the actions")
	p.until(`document.querySelector('#lane-east .decision').innerText.includes('请测量体温')`, "the passage waiting for a reading")
	p.submit(`#lane-east form[data-kind="override"]`, map[string]string{`select[name="outcome"]`: "pass",
		`select[name="reason"]`: "clinical_thermometer_normal"})
	p.until(`document.querySelector('#lane-east .decision.green') != null`, "the override's pass")
	if got := p.text("#lane-east .reasons"); !strings.Contains(got, "保安人工决定") {
		t.Errorf("the reasons show %q", got)
	}
	stop()
	evs := lb.events(t)
	if len(evs) != 1 || evs[0].Decision != "pass" || len(evs[0].Actions) != 1 || evs[0].Actions[0].Guard != "李明" ||
		evs[0].Actions[0].Reason != "clinical_thermometer_normal" || evs[0].Actions[0].Outcome != "pass" {
		t.Errorf("recorded %+v", evs)
	}
}

// TestScreenOnAPhone: on a phone-sized screen the guard's page fits the
// width (no sideways scrolling), and the sign-in and the lane are there.
func TestScreenOnAPhone(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": nil, "west": nil})
	lb.cfg.Screen.Listen = freeAddr(t)
	lb.cfg.Lanes[0].Camera.Device = "/dev/video-absent"
	lb.cfg.Lanes[1].Camera.Device = "/dev/video-absent"
	p := newPage(t)
	if err := chromedp.Do(p.ctx, chromedp.EmulateViewport(375, 667)); err != nil {
		t.Fatal(err)
	}
	running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now)})
	p.open("http://" + lb.cfg.Screen.Listen + "/")
	p.until(`document.querySelector('#lane-east') != null && document.querySelector('#lane-west') != null`, "both lanes")
	fits, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil || !fits {
		t.Errorf("the page is wider than a phone (%v)", err)
	}
	if got := p.text("#signin"); got == "" {
		t.Error("no sign-in on a phone")
	}
}
