package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// peakRSS returns a process's peak resident memory (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// zeroReader is an endless body.
type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestAuthorityUnderHostileLoad runs authority serve as a process and
// gives it what an unauthenticated client on its network can: large
// bodies on every kind of POST, declarations without a holder's signature, a body
// trickled a byte every 5 s, a flood of idle connections from one address.
// The authority must stay small, drop the trickler within the read
// timeout, keep serving other clients, and log the refusals.
func TestAuthorityUnderHostileLoad(t *testing.T) {
	readSources()
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--region", "44", "--out", "trust.cbor")
	addr := freePort(t)
	auth := startAuthority(t, dir, addr, "--region", "44")
	defer auth.kill()
	base := "http://" + addr

	// A body trickled one byte every 5 s, from its own address.
	trickler := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
	tc, err := trickler.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fmt.Fprintf(tc, "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	trickleStart := time.Now()
	dropped := make(chan time.Duration, 1)
	go func() {
		tc.SetReadDeadline(time.Now().Add(60 * time.Second))
		io.Copy(io.Discard, tc)
		dropped <- time.Since(trickleStart)
	}()
	stopTrickle := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopTrickle:
				return
			case <-time.After(5 * time.Second):
				tc.Write([]byte{'x'})
			}
		}
	}()
	defer close(stopTrickle)

	// 16 clients each post 63 MB to the upload, enrolment and admin
	// endpoints, and 64 post unsigned declarations. Each endpoint's
	// clients share an address of their own (two for the declarations),
	// under the per-address cap of 64 connections, so that each address
	// meets its own failure allowance.
	const big = 63 << 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]map[int]int{}
	post := func(from net.IP, path string, body io.Reader, size int64) {
		defer wg.Done()
		code := rawPost(t, from, addr, path, body, size)
		mu.Lock()
		if codes[path] == nil {
			codes[path] = map[int]int{}
		}
		codes[path][code]++
		mu.Unlock()
	}
	for i, path := range []string{"/v1/events", "/v1/enroll", "/v1/admin/revoke"} {
		from := net.IPv4(127, 0, 0, byte(10+i))
		for range 16 {
			wg.Add(1)
			go post(from, path, io.LimitReader(zeroReader{}, big), big)
		}
	}
	decl := bytes.Repeat([]byte{0xa0}, 200)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go post(net.IPv4(127, 0, 0, byte(20+i%2)), "/v1/declare", bytes.NewReader(decl), int64(len(decl)))
	}
	wg.Wait()
	for path, want := range map[string]int{"/v1/events": 401, "/v1/enroll": 413, "/v1/admin/revoke": 401, "/v1/declare": 401} {
		// Every request is answered: refused for what it is, or, once its
		// address has used up its ten failures, 429. The server answers
		// from the headers, before reading a byte of the body.
		got, total := codes[path], 0
		for _, n := range got {
			total += n
		}
		if got[want]+got[http.StatusTooManyRequests] != total || got[want] == 0 {
			t.Errorf("%s: answers %v (-1: no answer), want %d or 429", path, got, want)
		}
	}
	if n := codes["/v1/declare"][http.StatusOK]; n > 0 {
		t.Errorf("%d declarations without a holder's signature were answered", n)
	}
	peak := peakRSS(t, auth.cmd.Process.Pid)
	t.Logf("authority peak resident memory under the load: %d MiB", peak>>20)
	if peak > 256<<20 {
		t.Errorf("authority peak resident memory %d MiB, over 256 MiB", peak>>20)
	}

	// 200 idle connections from one address: 64 are kept, the rest closed
	// at once; another client is still served.
	flooder := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var flood []net.Conn
	for i := 0; i < 200; i++ {
		c, err := flooder.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		flood = append(flood, c)
	}
	open := 0
	for _, c := range flood {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "timeout") {
			open++
		}
	}
	if open != 64 {
		t.Errorf("%d of 200 connections from one address left open, want 64", open)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Get(base + "/v1/trust")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("another client during the flood: %v %v", res, err)
	}
	res.Body.Close()

	select {
	case d := <-dropped:
		t.Logf("trickling client dropped after %v", d.Round(100*time.Millisecond))
		if d > 45*time.Second {
			t.Errorf("trickling client held %v", d)
		}
	case <-time.After(50 * time.Second):
		t.Error("trickling client still held after 50 s")
	}
	auth.kill()
	logged := auth.stderr.String()
	for _, want := range []string{"refused: admin token", "locked out after repeated failures", "connections refused: limit reached"} {
		if !strings.Contains(logged, want) {
			t.Errorf("the authority did not log %q", want)
		}
	}
}

// rawPost sends a POST of size bytes from address from and returns the
// status of the answer, or -1 if there was none. The answer is read while
// the body is still being sent: a server that answers from the headers
// and closes the connection is seen to have answered, which a client that
// waits for its body to be sent may not see.
func rawPost(t *testing.T, from net.IP, addr, path string, body io.Reader, size int64) int {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Logf("dial from %v: %v", from, err)
		return -1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: authority\r\nContent-Type: application/cbor\r\nContent-Length: %d\r\n\r\n", path, size)
		io.Copy(c, body) // fails once the server closes the connection
	}()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Logf("POST %s from %v: %v", path, from, err)
		return -1
	}
	res.Body.Close()
	return res.StatusCode
}

// TestAdminTokenPermissions: an admin token file others can read is
// refused like a private key, by the server and by the operator's tools.
func TestAdminTokenPermissions(t *testing.T) {
	readSources()
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	tokenFile := dir + "/auth/admin.token"
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTool(t, dir, "authority", "serve", "--keys", "auth", "--db", "authority.db", "--listen", "127.0.0.1:0")
	if r.code != 2 || !strings.Contains(r.stderr, "admin.token") || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("serve with a world-readable admin token: exit %d, %q", r.code, r.stderr)
	}
	r = runTool(t, dir, "authority", "status", "--server", "http://127.0.0.1:1", "--token", "auth/admin.token")
	if r.code != 2 || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("status with a world-readable admin token: exit %d, %q", r.code, r.stderr)
	}
}
