package localapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/export"
	"github.com/checkpointd/checkpoint/store"
)

// Login is a supervisor's name and password.
type Login struct {
	User, Password string
}

// Client talks to the API: on the box's socket, over HTTPS with a pinned
// certificate, or in-process.
type Client struct {
	base  string
	http  *http.Client
	login Login
	stop  func()
}

// Errors of a call, beside an *Error answer.
var (
	// ErrRefused: the API refused the caller (wrong password, locked
	// account, local user outside the socket's group, too many failures).
	ErrRefused = errors.New("refused")
	// ErrUnreachable: the API could not be reached (no socket, no
	// permission on it, no answer, a certificate other than the pinned).
	ErrUnreachable = errors.New("cannot reach checkpointd")
)

// Error is an answer other than success.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.Msg, e.Status, http.StatusText(e.Status))
}

// Is makes the refusals ErrRefused.
func (e *Error) Is(target error) bool {
	return target == ErrRefused &&
		(e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusTooManyRequests)
}

// DefaultSocket is where checkpointd's socket is unless configured
// otherwise.
const DefaultSocket = "/run/checkpoint/api.sock"

// NewSocketClient returns a client of the API on the Unix socket at path.
func NewSocketClient(path string, login Login) *Client {
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 1, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: syncTimeout,
	}
	return &Client{base: "http://checkpointd", http: &http.Client{Transport: t}, login: login, stop: t.CloseIdleConnections}
}

// NewHTTPSClient returns a client of the API at an https URL, trusting
// only the certificate whose fingerprint is pin ("sha256:..."), which
// checkpointctl status shows on the box. There is no https without a pin.
func NewHTTPSClient(rawURL, pin string, login Login) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("localapi: %q: want https://host:port", rawURL)
	}
	if pin == "" {
		return nil, errors.New("localapi: an https address needs the certificate's fingerprint to pin (as checkpointctl status shows it on the box)")
	}
	conf, err := pinnedTLS(pin)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{TLSClientConfig: conf, TLSHandshakeTimeout: 10 * time.Second, MaxIdleConns: 1,
		IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: syncTimeout,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	return &Client{base: "https://" + u.Host, http: &http.Client{Transport: t}, login: login, stop: t.CloseIdleConnections}, nil
}

// NewPipeClient returns a client of s in this process, over in-memory
// connections (checkpointctl --db), served until ctx ends or Close.
func NewPipeClient(ctx context.Context, s *Server) *Client {
	ln := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: readHeaderTimeout}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	t := &http.Transport{DialContext: ln.dial, MaxIdleConns: 1}
	return &Client{base: "http://checkpointd", http: &http.Client{Transport: t},
		stop: func() { t.CloseIdleConnections(); cancel() }}
}

// Close lets go of the client's connections (and stops an in-process
// server).
func (c *Client) Close() {
	if c.stop != nil {
		c.stop()
	}
}

// pipeListener hands the server the far ends of net.Pipe connections.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  stdsync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	near, far := net.Pipe()
	select {
	case l.conns <- far:
		return near, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "in-process" }

// maxAnswer bounds a JSON answer read.
const maxAnswer = 64 << 20

// request sends a request and returns the successful response; any other
// answer is an error.
func (c *Client) request(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if c.login.User != "" {
		req.SetBasicAuth(c.login.User, c.login.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var body errorBody
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &body) != nil || body.Error == "" {
			body.Error = strings.TrimSpace(string(raw))
		}
		return nil, &Error{Status: resp.StatusCode, Msg: body.Error}
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, q url.Values, out any) error {
	resp, err := c.request(ctx, method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("localapi: the answer to %s: %w", path, err)
	}
	return nil
}

// Status returns the box's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Logs returns a page of the events f chooses, newest first.
func (c *Client) Logs(ctx context.Context, f store.Filter) (Page, error) {
	var p Page
	return p, c.call(ctx, http.MethodGet, "/v1/logs", f.Values(), &p)
}

// Stats returns the figures from from to to per step.
func (c *Client) Stats(ctx context.Context, from, to time.Time, step store.Step) (store.Stats, error) {
	var st store.Stats
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "step": {string(step)}}
	return st, c.call(ctx, http.MethodGet, "/v1/stats", q, &st)
}

// VerifyLog has the box check its hash chain.
func (c *Client) VerifyLog(ctx context.Context) (store.LogCheck, error) {
	var lc store.LogCheck
	return lc, c.call(ctx, http.MethodGet, "/v1/verify-log", nil, &lc)
}

// Sync has the box sync with its authority now.
func (c *Client) Sync(ctx context.Context) (SyncResult, error) {
	var r SyncResult
	return r, c.call(ctx, http.MethodPost, "/v1/sync", nil, &r)
}

// Purge has the box apply its retention now; unsent also deletes the
// events older than the retention the authority has not acknowledged.
func (c *Client) Purge(ctx context.Context, unsent bool) (PurgeResult, error) {
	var r PurgeResult
	var q url.Values
	if unsent {
		q = url.Values{"unsent": {"1"}, "confirm": {"1"}}
	}
	return r, c.call(ctx, http.MethodPost, "/v1/purge", q, &r)
}

// Exported is what an export brought.
type Exported struct {
	Manifest  []byte // the signed manifest file
	Rows      int
	Encrypted bool // the file came encrypted to the supervisor's key
}

// Export writes the events f chooses in format to the writer open gives
// (told whether the file comes encrypted to the supervisor's key) and
// returns the signed manifest. Without the manifest (the box stopped
// half-way) it fails: what was written is not a whole export.
func (c *Client) Export(ctx context.Context, f store.Filter, format export.Format, open func(encrypted bool) (io.Writer, error)) (Exported, error) {
	q := f.Values()
	q.Set("format", string(format))
	resp, err := c.request(ctx, http.MethodGet, "/v1/export", q)
	if err != nil {
		return Exported{}, err
	}
	defer resp.Body.Close()
	ex := Exported{Encrypted: resp.Header.Get(EncryptedHeader) != ""}
	w, err := open(ex.Encrypted)
	if err != nil {
		return ex, err
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return ex, fmt.Errorf("localapi: export: %w", err)
	}
	if msg := resp.Trailer.Get(ErrorTrailer); msg != "" {
		return ex, fmt.Errorf("localapi: the export stopped: %s", msg)
	}
	raw := resp.Trailer.Get(ManifestTrailer)
	if raw == "" {
		return ex, errors.New("localapi: the export came without its manifest: it is not whole")
	}
	if ex.Manifest, err = base64.StdEncoding.DecodeString(raw); err != nil {
		return ex, fmt.Errorf("localapi: the export's manifest: %w", err)
	}
	ex.Rows, _ = strconv.Atoi(resp.Trailer.Get(RowsTrailer))
	return ex, nil
}

// To is an Export destination that takes the file as it comes.
func To(w io.Writer) func(bool) (io.Writer, error) {
	return func(bool) (io.Writer, error) { return w, nil }
}
