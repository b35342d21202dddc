package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "authority"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestSyncOverTLS: an authority serving HTTPS with its own certificate;
// the operator's tools reach it trusting that certificate
// (SSL_CERT_FILE), and a checkpoint syncs with it through [sync] ca_file,
// and not without it. Served over plain HTTP off loopback, the authority
// warns.
func TestSyncOverTLS(t *testing.T) {
	readSources()
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--region", "44", "--out", "trust.cbor")
	certFile, keyFile := selfSigned(t, dir)
	addr := freePort(t)
	auth := startAuthority(t, dir, addr, "--tls-cert", certFile, "--tls-key", keyFile)
	defer auth.kill()
	url := "https://" + addr

	cmd := exec.Command(filepath.Join(toolsDir, "authority"), "enroll-token", "--server", url, "--token", "auth/admin.token", "--name", "tls-gate")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "SSL_CERT_FILE="+certFile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("enroll-token over https: %v", err)
	}
	token := strings.TrimSpace(string(out))

	config := func(caFile string) string {
		return `name = "tls-gate"
[trust]
root_key = "auth/root.pub"
[camera]
device = "none.avi"
[store]
path = "cp.db"
[sync]
authority = "` + url + `"
device_key = "device.key"
enroll_token = "` + token + `"
ca_file = "` + caFile + `"
`
	}
	os.WriteFile(filepath.Join(dir, "system.toml"), []byte(config("")), 0o644)
	if r := runTool(t, dir, "checkpointd", "--config", "system.toml", "--sync-once"); r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("sync with a certificate nobody vouches for: exit %d, %s", r.code, r.stderr)
	}
	os.WriteFile(filepath.Join(dir, "pinned.toml"), []byte(config(certFile)), 0o644)
	if r := runTool(t, dir, "checkpointd", "--config", "pinned.toml", "--sync-once"); r.code != 0 || !strings.Contains(r.stdout, "synced with "+url) {
		t.Errorf("sync trusting the authority's certificate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Plain HTTP on every address: a warning.
	plain := startAuthority(t, dir, "0.0.0.0:0", "--db", "plain.db")
	plain.kill()
	if !strings.Contains(plain.stderr.String(), "serving plain HTTP off loopback") {
		t.Errorf("no warning for plain HTTP off loopback: %s", plain.stderr.String())
	}
}
