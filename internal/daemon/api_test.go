package daemon

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/localapi"
	"github.com/checkpointd/checkpoint/store"
)

// TestLocalAPI runs a checkpoint with the supervisors' API on its socket
// and over HTTPS: the status shows its lane and the pinned certificate's
// fingerprint, the log is read with the masked names opened, and every
// reading is in the log as an audit event of this checkpoint.
func TestLocalAPI(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": nil})
	lb.cfg.Lanes[0].Camera.Device = "/dev/video-absent" // keeps the daemon running
	sockDir, err := os.MkdirTemp("", "cpapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	lb.cfg.Screen.Listen = freeAddr(t) // running waits for it
	lb.cfg.Sync.DeviceKey = filepath.Join(lb.dir, "device.key")
	lb.cfg.API = config.Defaults().API
	lb.cfg.API.Socket = filepath.Join(sockDir, "api.sock")
	lb.cfg.API.Listen = freeAddr(t)
	lb.cfg.API.Supervisors = []config.Supervisor{{Name: "wang", Password: cheapHash("secret words")}}

	// Two passages from before this start.
	key, err := keyfile.StoreKey(lb.cfg.Store.Key)
	if err != nil {
		t.Fatal(err)
	}
	box, err := store.OpenBox(lb.cfg.Store.Path, store.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	for _, outcome := range []string{"pass", "refuse"} {
		if _, err := box.Record(context.Background(), store.Event{Time: f.Now.Add(-time.Hour), Kind: "passage", Lane: "east",
			Decision: outcome, MaskedName: "张*丰", Gate: "station"}); err != nil {
			t.Fatal(err)
		}
	}
	box.Close()

	running(t, lb.cfg, Options{Clock: clocktest.NewRunning(f.Now)})
	login := localapi.Login{User: "wang", Password: "secret words"}
	sock := localapi.NewSocketClient(lb.cfg.API.Socket, login)
	defer sock.Close()
	ctx := context.Background()
	var st localapi.Status
	for i := 0; ; i++ {
		if st, err = sock.Status(ctx); err == nil || !errors.Is(err, localapi.ErrUnreachable) || i == 500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := lb.cfg.APICertFiles()
	if filepath.Dir(certPath) != lb.dir || filepath.Base(keyPath) != "api.key" {
		t.Errorf("the certificate's files: %s %s", certPath, keyPath)
	}
	if len(st.Lanes) != 1 || st.Lanes[0].Name != "east" || st.Lanes[0].Camera.Device != "/dev/video-absent" ||
		st.LastPassage == nil || st.LastPassage.Outcome != "refuse" || st.Unsent != 2 || st.Checkpoint != "station" ||
		st.Fingerprint == "" || st.Trust == nil || st.Revocations.Version != 1 || st.Revocations.Stale || st.DeviceKey == "" {
		t.Fatalf("status %+v", st)
	}

	https, err := localapi.NewHTTPSClient("https://"+lb.cfg.API.Listen, st.Fingerprint, login)
	if err != nil {
		t.Fatal(err)
	}
	defer https.Close()
	page, err := https.Logs(ctx, store.Filter{Kind: "passage"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 || page.Events[0].MaskedName != "张*丰" || page.Events[0].Outcome != "refuse" {
		t.Fatalf("logs %+v", page)
	}
	if _, err := sock.Sync(ctx); err == nil {
		t.Error("a sync without an authority")
	}

	audits, err := sock.Logs(ctx, store.Filter{Kind: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	if len(audits.Events) != 2 {
		t.Fatalf("%d audit events, want 2 (status, logs)", len(audits.Events))
	}
	logs, status := audits.Events[0], audits.Events[1]
	if status.Audit.Action != "status" || status.Audit.Who != "wang" || status.Checkpoint != "station" ||
		logs.Audit.Action != "logs" || logs.Audit.User != "127.0.0.1" || logs.Audit.Query != "kind=passage" || logs.Audit.Rows != 2 ||
		logs.Time.Before(f.Now) {
		t.Errorf("audits %+v %+v", *status.Audit, *logs.Audit)
	}
}

// cheapHash is an Argon2id PHC hash at a low cost, for fast tests.
func cheapHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
}
