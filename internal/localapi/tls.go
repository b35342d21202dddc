package localapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Fingerprint is how a client pins a certificate: "sha256:" and the hex
// SHA-256 of its DER encoding.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// LoadOrCreateCert reads the API's certificate and key, making a
// self-signed one (ECDSA P-256, ten years) at first start: the key with
// mode 0600, refused when others can read it. It returns the certificate
// and its fingerprint.
func LoadOrCreateCert(certPath, keyPath, name string, clk clock.Clock) (tls.Certificate, string, error) {
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		if err := createCert(certPath, keyPath, name, clk.Now()); err != nil {
			return tls.Certificate{}, "", fmt.Errorf("localapi: making the certificate: %w", err)
		}
	case certErr != nil || keyErr != nil:
		return tls.Certificate{}, "", fmt.Errorf("localapi: the certificate %s and its key %s: one is missing or unreadable: %w",
			certPath, keyPath, errors.Join(certErr, keyErr))
	}
	st, err := os.Stat(keyPath)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("localapi: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return tls.Certificate{}, "", fmt.Errorf("localapi: %s is readable by group or others (mode %#o): run chmod 600 %s",
			keyPath, st.Mode().Perm(), keyPath)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("localapi: %w", err)
	}
	return cert, Fingerprint(cert.Certificate[0]), nil
}

func createCert(certPath, keyPath, name string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	hosts := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "checkpoint " + name, Organization: []string{"checkpoint"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     hosts,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o755); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile writes data beside path and renames it there, so that a crash
// never leaves half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ServeTLS serves the API over HTTPS on ln with cert until ctx ends.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	return s.serve(ctx, ln, "https", nil, conf)
}

// ErrPin is a server whose certificate is not the one pinned.
var ErrPin = errors.New("the server's certificate does not match the pinned fingerprint")

// pinnedTLS is a client's TLS configuration that trusts exactly the
// certificate with fingerprint pin, self-signed as it is.
func pinnedTLS(pin string) (*tls.Config, error) {
	pin = strings.ToLower(strings.TrimSpace(pin))
	hexPart, ok := strings.CutPrefix(pin, "sha256:")
	if b, err := hex.DecodeString(hexPart); !ok || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("localapi: a pin is sha256: and 64 hex digits, as checkpointctl status shows it")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The certificate is self-signed: it is checked against the pin
		// below rather than against certificate authorities.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || Fingerprint(raw[0]) != pin {
				return ErrPin
			}
			return nil
		},
	}, nil
}

// limitListener keeps at most max connections open; one more is closed
// at once, and counted in the log at most once a minute.
type limitListener struct {
	net.Listener
	max   int
	clock clock.Clock
	log   *slog.Logger

	mu        stdsync.Mutex
	open      int
	refused   int
	lastNoted time.Time
}

func newLimitListener(ln net.Listener, max int, clk clock.Clock, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: max, clock: clk, log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.refused++
		if now := l.clock.Now(); now.Sub(l.lastNoted) >= time.Minute {
			l.log.Warn("connections refused: limit reached", "refused", l.refused, "max", l.max)
			l.refused, l.lastNoted = 0, now
		}
		l.mu.Unlock()
		c.Close()
	}
}

// limitedConn gives its place back when closed.
type limitedConn struct {
	net.Conn
	l    *limitListener
	once stdsync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
