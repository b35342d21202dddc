package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/export"
	"github.com/checkpointd/checkpoint/internal/localapi"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
	"github.com/checkpointd/checkpoint/verify"
)

// serveAPI serves the supervisors' local API on the socket and, when
// [api] listen is set, over HTTPS, until ctx ends. Without a supervisor
// configured it is off.
func (d *Daemon) serveAPI(ctx context.Context, wg *stdsync.WaitGroup, box *store.Box, b *apiBackend) (err error) {
	ac := d.cfg.API
	log := d.log.With("component", "localapi")
	if len(ac.Supervisors) == 0 {
		log.Info("the supervisors' API is off: no [[api.supervisor]] configured")
		return nil
	}
	key, err := deviceKey(d.cfg.Sync.DeviceKey)
	if err != nil {
		return fmt.Errorf("device key: %w", err)
	}
	cfg := localapi.Config{Checkpoint: d.cfg.Name, Group: ac.Group, Retention: time.Duration(d.cfg.Store.Retention),
		LockAfter: ac.LockAfter, LockFor: time.Duration(ac.LockFor), MaxConns: ac.MaxConns, DeviceKey: key}
	for _, s := range ac.Supervisors {
		sup := localapi.Supervisor{Name: s.Name, Password: s.Password}
		if s.BoxKey != "" {
			if sup.BoxKey, err = export.ReadBoxPublic(s.BoxKey); err != nil {
				return fmt.Errorf("api.supervisor %q: box_key: %w", s.Name, err)
			}
		}
		cfg.Supervisors = append(cfg.Supervisors, sup)
	}
	var cert tls.Certificate
	if ac.Listen != "" {
		certPath, keyPath := d.cfg.APICertFiles()
		if cert, cfg.Fingerprint, err = localapi.LoadOrCreateCert(certPath, keyPath, d.cfg.Name, d.clock); err != nil {
			return err
		}
	}
	s, err := localapi.New(cfg, box, b, d.clock, d.log)
	if err != nil {
		return err
	}
	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range listeners {
				ln.Close()
			}
		}
	}()
	var unixLn *net.UnixListener
	if ac.Socket != "" {
		if unixLn, err = localapi.ListenUnix(ac.Socket, ac.Group, d.log); err != nil {
			return err
		}
		listeners = append(listeners, unixLn)
	}
	var tcpLn net.Listener
	if ac.Listen != "" {
		if tcpLn, err = net.Listen("tcp", ac.Listen); err != nil {
			return fmt.Errorf("api: %w", err)
		}
		listeners = append(listeners, tcpLn)
		log.Info("supervisors' API over HTTPS: pin its certificate", "addr", tcpLn.Addr().String(), "fingerprint", cfg.Fingerprint)
	}
	run := func(serve func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(); err != nil {
				log.Error("the supervisors' API stopped", "err", err)
			}
		}()
	}
	if unixLn != nil {
		run(func() error { return s.ServeUnix(ctx, unixLn) })
	}
	if tcpLn != nil {
		run(func() error { return s.ServeTLS(ctx, tcpLn, cert) })
	}
	return nil
}

// apiBackend is the running checkpoint as the local API sees it.
type apiBackend struct {
	est    *sync.Estimator
	syncer *sync.Syncer // nil: no authority
	trust  func() *trust.List
	// revs is the revocation list checked, when it is a file's rather
	// than the store's (revVersion its version).
	revs       verify.Revocations
	revVersion uint64
	lanes      []*lane
}

func (b *apiBackend) Now() verify.Instant { return b.est.Now() }

// Sync runs the syncer's sync now; it takes its turn with the syncer's
// own loop.
func (b *apiBackend) Sync(ctx context.Context) (sync.Status, error) {
	if b.syncer == nil {
		return sync.Status{}, localapi.ErrNoSync
	}
	err := b.syncer.SyncOnce(ctx)
	return b.syncer.Status(), err
}

// Describe adds the lanes, the sync, the trust list and the revocation
// list from files to the status.
func (b *apiBackend) Describe(st *localapi.Status) {
	for _, l := range b.lanes {
		cam, stats := l.pipe.Status(), l.pipe.Stats()
		if cam.Device == "" { // the camera has not started yet
			cam.Device = l.cfg.Camera.Device
		}
		ls := localapi.Lane{Name: l.name, Passages: l.passages.Load(), Camera: localapi.Camera{Device: cam.Device,
			State: cam.State.String(), Since: cam.Since, Error: cam.Error, Frames: stats.Captured, Processed: stats.Processed,
			Dropped: stats.Dropped}}
		if l.thermDev != nil {
			s := l.thermDev.Status()
			ls.Devices = append(ls.Devices, localapi.Device{Kind: "thermometer", Up: s.Up, Error: s.Error})
		}
		if l.idReader != nil {
			s := l.idReader.Status()
			ls.Devices = append(ls.Devices, localapi.Device{Kind: "id_reader", Up: s.Up, Error: s.Error})
		}
		if l.handheld != nil {
			s := l.handheld.Status()
			ls.Devices = append(ls.Devices, localapi.Device{Kind: "scanner", Up: s.Up, Error: s.Error})
		}
		if l.gateDev != nil {
			s := l.gateDev.Status()
			g := localapi.Device{Kind: "gate", Up: s.LastError == "" && !s.Alarm, Error: s.LastError}
			if s.Alarm {
				g.Error = "fire alarm: held open"
			}
			ls.Devices = append(ls.Devices, g)
		}
		st.Lanes = append(st.Lanes, ls)
	}
	if b.syncer != nil {
		ss := b.syncer.Status()
		st.Sync = &ss
		if !ss.LastOK.IsZero() {
			off := ss.Offset.Milliseconds()
			st.Clock.OffsetMS = &off
		}
		st.Clock.StepMS = ss.ClockStep.Milliseconds()
	}
	if t := b.trust(); t != nil {
		st.Trust = &localapi.List{Version: t.Version, IssuedAt: t.IssuedAt, AgeS: int64(st.Time.Sub(t.IssuedAt) / time.Second),
			Expires: t.Expires, Stale: st.Time.After(t.Expires)}
	}
	if b.revs != nil {
		until := b.revs.ValidUntil()
		st.Revocations = localapi.List{Version: b.revVersion, Expires: until, Stale: until.IsZero() || st.Time.After(until)}
		if s, ok := b.revs.(interface{ Len() int }); ok {
			st.Revocations.Entries = uint64(s.Len())
		}
	}
}
