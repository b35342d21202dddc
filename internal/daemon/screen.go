package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/screen"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
	"github.com/checkpointd/checkpoint/verify"
)

// serveScreen serves the guard's and the passengers' screen until ctx
// ends.
func (d *Daemon) serveScreen(ctx context.Context, wg *stdsync.WaitGroup, lanes []*lane, status func() screen.Status) (*screen.Server, error) {
	sc := d.cfg.Screen
	cfg := screen.Config{Checkpoint: d.cfg.Name, LockAfter: sc.LockAfter, LockFor: time.Duration(sc.LockFor), TLS: sc.TLSCert != ""}
	for _, l := range lanes {
		cfg.Lanes = append(cfg.Lanes, l.name)
	}
	for _, g := range sc.Guards {
		cfg.Guards = append(cfg.Guards, screen.Guard{Name: g.Name, PIN: g.PIN})
	}
	s, err := screen.New(cfg, d, status, d.clock, d.log)
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if sc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("screen: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		return nil, fmt.Errorf("screen: %w", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Serve(ctx, ln, tlsConfig); err != nil {
			d.log.Error("screen stopped", "component", "screen", "err", err)
		}
	}()
	return s, nil
}

// statusOf reads what the status line shows.
type statusOf struct {
	d      *Daemon
	box    *store.Box
	est    *sync.Estimator
	syncer *sync.Syncer // nil: no authority
	revs   verify.Revocations
	policy passage.Policy
	lanes  []*lane
}

// status is the status line: each lane's camera and devices, the last
// sync, the revocation list's age, the clock, the disk and the unsent
// events, each marked when it needs attention.
func (s statusOf) status() screen.Status {
	now := s.est.Now()
	st := screen.Status{Checkpoint: s.d.cfg.Name}
	add := func(key, zh, en, value string, bad bool) {
		st.Items = append(st.Items, screen.Item{Key: key, ZH: zh, EN: en, Value: value, Bad: bad})
	}
	up := func(ok bool) string {
		if ok {
			return "正常 ok"
		}
		return "故障 down"
	}
	for _, l := range s.lanes {
		cam := l.pipe.Status()
		add(l.name+"/camera", l.name+" 摄像头", l.name+" camera", cam.State.String(), cam.State != scanner.Running && cam.State != scanner.Ended)
		if l.thermDev != nil {
			ok := l.thermDev.Status().Up
			add(l.name+"/thermometer", l.name+" 测温", l.name+" thermometer", up(ok), !ok)
		}
		if l.idReader != nil {
			ok := l.idReader.Status().Up
			add(l.name+"/id_reader", l.name+" 读卡器", l.name+" card reader", up(ok), !ok)
		}
		if l.handheld != nil {
			ok := l.handheld.Status().Up
			add(l.name+"/scanner", l.name+" 扫码枪", l.name+" scanner", up(ok), !ok)
		}
		if l.gateDev != nil {
			g := l.gateDev.Status()
			value := up(g.Errors == 0)
			if g.Alarm {
				value = "消防常开 fire alarm"
			}
			add(l.name+"/gate", l.name+" 闸门", l.name+" gate", value, g.Alarm || g.LastError != "")
		}
	}
	if s.syncer != nil {
		ss := s.syncer.Status()
		value, bad := "从未 never", true
		if !ss.LastOK.IsZero() {
			ago := now.Time.Sub(ss.LastOK)
			value, bad = ago.Round(time.Second).String()+" 前 ago", ago > 24*time.Hour
		}
		add("sync", "同步", "last sync", value, bad)
	}
	if s.revs != nil {
		until := s.revs.ValidUntil()
		stale := now.Time.After(until)
		value := "有效至 until " + until.Format("01-02 15:04")
		if until.IsZero() {
			value = "无 none"
		}
		add("revocations", "撤销名单", "revocation list", value, stale)
	}
	clockBad := now.Uncertainty < 0 || now.Uncertainty > time.Duration(s.policy.MaxClockUncertainty)
	clock := "±" + now.Uncertainty.Round(time.Millisecond).String()
	if now.Uncertainty < 0 {
		clock = "不可信 untrusted"
	}
	add("clock", "时钟", "clock", clock, clockBad)
	disk := s.box.Disk()
	add("disk", "磁盘", "disk", fmt.Sprintf("%d MB", disk.Free>>20), disk.Low || disk.Err != "")
	unsent, _ := s.box.Unsent()
	add("unsent", "未上传", "unsent", fmt.Sprint(unsent), false)
	return st
}
