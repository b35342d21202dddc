package screen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/passhash"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/verify"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// actor records the actions it is given.
type actor struct {
	mu  sync.Mutex
	got []string
}

func (a *actor) Act(_ context.Context, lane string, x passage.Action) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, lane+":"+string(x.Kind)+":"+x.Guard+":"+x.Reason)
	return nil
}

func newServer(t *testing.T, tls bool) (*Server, *clocktest.Fake, *actor) {
	t.Helper()
	h, err := passhash.Hash("2468")
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(t0)
	a := &actor{}
	s, err := New(Config{Checkpoint: "gate-3", Lanes: []string{"east"}, Guards: []Guard{{Name: "李明", PIN: h}}, TLS: tls},
		a, func() Status { return Status{Checkpoint: "gate-3"} }, clk, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, a
}

// call sends a request from the screen page on this box, with cookies.
func call(s *Server, method, path, body string, cookies []*http.Cookie, edit func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:4000"
	r.Header.Set("X-Checkpoint-Screen", "1")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	if edit != nil {
		edit(r)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// TestSignIn: a right PIN signs in; wrong ones are refused and, five in
// a row, lock signing in (the right PIN too) until the lock runs out.
func TestSignIn(t *testing.T) {
	s, clk, _ := newServer(t, false)
	signIn := func(name, pin string) *httptest.ResponseRecorder {
		return call(s, http.MethodPost, "/api/signin", `{"name":"`+name+`","pin":"`+pin+`"}`, nil, nil)
	}
	w := signIn("李明", "2468")
	if w.Code != http.StatusOK || len(w.Result().Cookies()) != 1 || !w.Result().Cookies()[0].HttpOnly {
		t.Fatalf("sign-in: %d %v", w.Code, w.Result().Cookies())
	}
	if me := call(s, http.MethodGet, "/api/me", "", w.Result().Cookies(), nil); !strings.Contains(me.Body.String(), "李明") {
		t.Errorf("me: %s", me.Body)
	}
	for i := 0; i < 5; i++ {
		if w := signIn("李明", "0000"); w.Code != http.StatusUnauthorized {
			t.Errorf("wrong PIN %d: %d", i+1, w.Code)
		}
	}
	if w := signIn("李明", "2468"); w.Code != http.StatusLocked {
		t.Errorf("right PIN after five wrong ones: %d", w.Code)
	}
	clk.Advance(5 * time.Minute)
	if w := signIn("李明", "2468"); w.Code != http.StatusOK {
		t.Errorf("right PIN after the lock: %d", w.Code)
	}
	if w := signIn("nobody", "2468"); w.Code != http.StatusUnauthorized {
		t.Errorf("unknown guard: %d", w.Code)
	}
}

// TestActions: an action needs the page's header, a guard signed in, and
// (without TLS) this box; it reaches the lane with the guard's name.
func TestActions(t *testing.T) {
	s, _, a := newServer(t, false)
	cookies := call(s, http.MethodPost, "/api/signin", `{"name":"李明","pin":"2468"}`, nil, nil).Result().Cookies()
	override := `{"lane":"east","kind":"override","outcome":"pass","reason":"official_duty"}`
	for _, tc := range []struct {
		name    string
		body    string
		cookies []*http.Cookie
		edit    func(*http.Request)
		want    int
	}{
		{"signed in", override, cookies, nil, http.StatusNoContent},
		{"not signed in", override, nil, nil, http.StatusUnauthorized},
		{"another site", override, cookies, func(r *http.Request) { r.Header.Del("X-Checkpoint-Screen") }, http.StatusForbidden},
		{"another machine", override, cookies, func(r *http.Request) { r.RemoteAddr = "192.0.2.7:4000" }, http.StatusForbidden},
		{"a reason not on the list", `{"lane":"east","kind":"override","outcome":"pass","reason":"friend"}`, cookies, nil, http.StatusBadRequest},
		{"a temperature out of range", `{"lane":"east","kind":"temperature","celsius":52}`, cookies, nil, http.StatusBadRequest},
		{"a temperature", `{"lane":"east","kind":"temperature","celsius":36.6}`, cookies, nil, http.StatusNoContent},
		{"an unknown action", `{"lane":"east","kind":"open_all"}`, cookies, nil, http.StatusBadRequest},
		{"an unknown field", `{"lane":"east","kind":"confirm_id","x":1}`, cookies, nil, http.StatusBadRequest},
	} {
		if w := call(s, http.MethodPost, "/api/act", tc.body, tc.cookies, tc.edit); w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
		}
	}
	if strings.Join(a.got, " ") != "east:override:李明:official_duty east:temperature:李明:" {
		t.Errorf("actions taken: %v", a.got)
	}

	// Over TLS, guards may act from another machine.
	s, _, a = newServer(t, true)
	cookies = call(s, http.MethodPost, "/api/signin", `{"name":"李明","pin":"2468"}`, nil,
		func(r *http.Request) { r.RemoteAddr = "192.0.2.7:4000" }).Result().Cookies()
	if w := call(s, http.MethodPost, "/api/act", override, cookies, func(r *http.Request) { r.RemoteAddr = "192.0.2.7:4000" }); w.Code != http.StatusNoContent {
		t.Errorf("over TLS from another machine: %d %s", w.Code, w.Body)
	}
	if strings.Join(a.got, " ") != "east:override:李明:official_duty" {
		t.Errorf("actions taken over TLS: %v", a.got)
	}
}

// TestEvents: a page gets the whole state first, then each change.
func TestEvents(t *testing.T) {
	s, _, _ := newServer(t, false)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events := bufio.NewReader(res.Body)
	next := func() (string, []byte) {
		t.Helper()
		var name string
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimSpace(line[7:])
			case strings.HasPrefix(line, "data: "):
				return name, []byte(line[6:])
			}
		}
	}
	if name, data := next(); name != "snapshot" || !bytes.Contains(data, []byte(`"lane":"east"`)) {
		t.Fatalf("first event %s %s", name, data)
	}
	p := View(passage.Passage{Lane: "east", Opened: t0, Outcome: verify.Pass}, passage.DefaultPolicy(), &Closed{Seq: 7, Gate: "pulse", Recorded: true}, t0)
	s.Publish("east", nil, &p)
	name, data := next()
	var l Lane
	if err := json.Unmarshal(data, &l); name != "lane" || err != nil || len(l.Last) != 1 || l.Last[0].Seq != 7 || l.Last[0].HeadlineZH != "通行" {
		t.Errorf("lane event %s %s (%v)", name, data, err)
	}
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("content type %q", res.Header.Get("Content-Type"))
	}
}

// TestHeadlines: what the passenger is told, for each state of a
// passage.
func TestHeadlines(t *testing.T) {
	pol := passage.DefaultPolicy()
	decided := &Closed{Recorded: true}
	for _, tc := range []struct {
		name       string
		p          passage.Passage
		closed     *Closed
		colour, zh string
	}{
		{"pass", passage.Passage{Outcome: verify.Pass}, decided, "green", "通行"},
		{"pass on ID card", passage.Passage{Outcome: verify.Pass, ID: &passage.IDRead{Number: "x"}}, decided, "green", "通行（凭身份证）"},
		{"second check", passage.Passage{Outcome: verify.Refer}, decided, "yellow", "请人工核验"},
		{"refused", passage.Passage{Outcome: verify.Refuse}, decided, "red", "禁止通行"},
		{"refused before its reading", passage.Passage{Outcome: verify.Refuse, Waiting: []string{"temperature"}}, nil, "red", "禁止通行"},
		{"waiting for a reading", passage.Passage{Waiting: []string{"temperature"}}, nil, "grey", "请测量体温"},
		{"re-measure", passage.Passage{Waiting: []string{"remeasure"}}, nil, "yellow", "请复测体温"},
		{"waiting for the card", passage.Passage{Waiting: []string{"id_card"}}, nil, "grey", "请出示身份证"},
		{"waiting for a code", passage.Passage{Waiting: []string{"code"}}, nil, "grey", "请出示健康码"},
	} {
		v := View(tc.p, pol, tc.closed, t0)
		if v.Colour != tc.colour || v.HeadlineZH != tc.zh || v.HeadlineEN == "" || v.Icon == "" {
			t.Errorf("%s: %s %q %q %q", tc.name, v.Colour, v.HeadlineZH, v.HeadlineEN, v.Icon)
		}
	}
	v := View(passage.Passage{Outcome: verify.Refuse, Reasons: []verify.Reason{verify.Fever},
		Readings: []hardware.Reading{{Body: 38.2}, {Body: 12}, {Body: 36.6}}}, pol, decided, t0)
	if len(v.Reasons) != 1 || v.Reasons[0].ZH == "" || !v.Readings[0].Fever || !v.Readings[1].Error || v.Readings[2].Fever {
		t.Errorf("reasons and readings: %+v %+v", v.Reasons, v.Readings)
	}
}

// TestPages: the pages and their scripts are served, and nothing they
// need comes from elsewhere.
func TestPages(t *testing.T) {
	s, _, _ := newServer(t, false)
	for _, path := range []string{"/", "/lane/east", "/static/app.js", "/static/guard.js", "/static/passenger.js", "/static/app.css"} {
		w := call(s, http.MethodGet, path, "", nil, nil)
		body, _ := io.ReadAll(w.Body)
		if w.Code != http.StatusOK || len(body) == 0 || strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
			t.Errorf("%s: %d, %d bytes (or a URL elsewhere)", path, w.Code, len(body))
		}
		if !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: no content security policy", path)
		}
	}
}

// stuckWriter is a page that stops reading: every write after the first
// blocks until the page goes away.
type stuckWriter struct {
	header http.Header
	wrote  chan struct{} // closed at the first write
	gone   <-chan struct{}
	writes int
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Flush()              {}
func (w *stuckWriter) Write(b []byte) (int, error) {
	if w.writes++; w.writes == 1 {
		close(w.wrote)
		return len(b), nil
	}
	<-w.gone
	return 0, io.ErrClosedPipe
}

// TestEventStreamsBounded: no more than maxSubscribers event streams are
// served at once, counting those dropped for not keeping up whose write
// is still blocked; a stream that ends frees its place.
func TestEventStreamsBounded(t *testing.T) {
	s, _, _ := newServer(t, false)
	gone := make(chan struct{})
	var wg sync.WaitGroup
	for range maxSubscribers {
		w := &stuckWriter{header: http.Header{}, wrote: make(chan struct{}), gone: gone}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.events(w, httptest.NewRequest("GET", "/events", nil))
		}()
		<-w.wrote // subscribed, the snapshot written
	}
	// Enough updates to fill every stuck page's queue: each is dropped.
	for range 100 {
		s.Publish("east", nil, nil)
	}
	s.mu.Lock()
	left := len(s.subs)
	s.mu.Unlock()
	if left != 0 {
		t.Errorf("%d stuck pages still subscribed", left)
	}
	extra, cancelExtra := context.WithTimeout(context.Background(), 2*time.Second)
	rec := httptest.NewRecorder()
	s.events(rec, httptest.NewRequestWithContext(extra, "GET", "/events", nil))
	cancelExtra()
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("stream %d served while %d others are stuck writing: %d", maxSubscribers+1, maxSubscribers, rec.Code)
	}
	close(gone)
	wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	w := &stuckWriter{header: http.Header{}, wrote: make(chan struct{}), gone: ctx.Done()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.events(w, httptest.NewRequestWithContext(ctx, "GET", "/events", nil))
	}()
	<-w.wrote
	cancel()
	<-done
	if ct := w.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("a stream once the stuck ones ended: content type %q", ct)
	}
}
