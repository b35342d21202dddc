package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/protocol"
)

// What the phone says to the authority (docs/authority.md): it registers
// its holder key with a proof of who the holder is, declares, and asks
// for its status, each request signed with the holder key.

// registration is what the phone keeps of its registration, beside its
// key: the authority and the subject pseudonym its requests name.
type registration struct {
	Server     string    `json:"server"`
	Subject    string    `json:"subject"`
	Registered time.Time `json:"registered"`
}

// registrationPath is the registration file: the flag's, or
// registration.json beside the key.
func registrationPath(flagValue, keyPath string) string {
	if flagValue != "" {
		return flagValue
	}
	return filepath.Join(filepath.Dir(keyPath), "registration.json")
}

func readKey(path string) (ed25519.PrivateKey, error) {
	k, err := keyfile.ReadPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usagef("key file %s does not exist", path)
	}
	if errors.Is(err, keyfile.ErrTooOpen) {
		return nil, cli.UsageError{Msg: err.Error()}
	}
	return k, err
}

// client signs a holder's requests to an authority.
type client struct {
	server string
	id     string // the HeaderHolder value
	key    ed25519.PrivateKey
	clock  clock.Clock
	http   *http.Client
	offset time.Duration // the authority's time minus the phone's, once told
}

func newClient(server, id string, key ed25519.PrivateKey, clk clock.Clock) *client {
	return &client{server: strings.TrimRight(server, "/"), id: id, key: key, clock: clk, http: &http.Client{Timeout: 30 * time.Second}}
}

// call sends a signed request and decodes a 200 answer into res. A
// request dated outside the authority's window is sent once more, dated
// by the authority's time.
func (c *client) call(method, path string, req, res any) error {
	var body []byte
	if req != nil {
		var err error
		if body, err = protocol.Enc.Marshal(req); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		r, err := http.NewRequest(method, c.server+path, bytes.NewReader(body))
		if err != nil {
			return cli.Usagef("--server: %v", err)
		}
		r.Header.Set("Content-Type", protocol.ContentType)
		nonce := make([]byte, 16)
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		protocol.SignHolderRequest(r, c.id, c.key, nonce, c.clock.Now().Add(c.offset), body)
		resp, err := c.http.Do(r)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if st := resp.Header.Get(protocol.HeaderServerTime); resp.StatusCode == http.StatusUnauthorized && st != "" && attempt == 0 {
			if unix, err := strconv.ParseInt(st, 10, 64); err == nil {
				c.offset = time.Unix(unix, 0).Sub(c.clock.Now())
				continue
			}
		}
		if resp.StatusCode != http.StatusOK {
			msg := bytes.TrimSpace(b)
			if ra := resp.Header.Get("Retry-After"); resp.StatusCode == http.StatusTooManyRequests && ra != "" &&
				resp.Header.Get(protocol.HeaderNextDeclaration) == "" {
				return fmt.Errorf("%s: %s (try again in %s s)", resp.Status, msg, ra)
			}
			return fmt.Errorf("%s: %s", resp.Status, msg)
		}
		return protocol.Dec.Unmarshal(b, res)
	}
}

func register(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := flag.NewFlagSet("holder register", flag.ContinueOnError)
	server := fl.String("server", "", "the authority")
	keyPath := fl.String("key", "", "holder private key (the phone's)")
	idNumber := fl.String("id-number", "", "the holder's ID number")
	name := fl.String("name", "", "the holder's name")
	code := fl.String("code", "", "a registration code from a community office")
	assertionPath := fl.String("assertion", "", "a real-name service's assertion (instead of a code)")
	regPath := fl.String("registration", "", "file to keep the registration in (default registration.json beside --key)")
	if err := cli.Parse(fl, args, "server", "key", "id-number", "name"); err != nil {
		return err
	}
	if (*code == "") == (*assertionPath == "") {
		return cli.Usagef("one of --code and --assertion is required")
	}
	id, err := credential.ParseID(*idNumber)
	if err != nil {
		return cli.Usagef("--id-number: %v", err)
	}
	key, err := readKey(*keyPath)
	if err != nil {
		return err
	}
	var assertion []byte
	if *assertionPath != "" {
		if assertion, err = os.ReadFile(*assertionPath); errors.Is(err, fs.ErrNotExist) {
			return cli.Usagef("assertion file %s does not exist", *assertionPath)
		} else if err != nil {
			return err
		}
	}
	pub := key.Public().(ed25519.PublicKey)
	c := newClient(*server, hex.EncodeToString(pub), key, clk)
	var res protocol.RegisterResponse
	if err := c.call(http.MethodPost, protocol.PathRegister, protocol.RegisterRequest{IDNumber: id, Name: *name, HolderKey: pub,
		Code: *code, Assertion: assertion}, &res); err != nil {
		return err
	}
	reg := registration{Server: c.server, Subject: hex.EncodeToString(res.Subject), Registered: res.Registered}
	b, err := json.MarshalIndent(reg, "", "  ")
	if err != nil {
		return err
	}
	path := registrationPath(*regPath, *keyPath)
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return err
	}
	// A file from before keeps its mode through WriteFile: it names the
	// holder's subject, so it is the holder's alone.
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	how := "a registration code"
	if assertion != nil {
		how = "the real-name service's assertion"
	}
	fmt.Fprintf(stdout, "registered with %s: subject %s", how, reg.Subject)
	if res.Replaced {
		fmt.Fprint(stdout, "; the key of the phone before is replaced, and its codes revoked")
	}
	fmt.Fprintln(stdout)
	return nil
}

// registered opens the phone's key and registration for a signed
// request; --server overrides the registration's.
func registered(server, keyPath, regPath string, clk clock.Clock) (*client, error) {
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	path := registrationPath(regPath, keyPath)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usagef("%s does not exist: register first (holder register)", path)
	}
	if err != nil {
		return nil, err
	}
	var reg registration
	if err := json.Unmarshal(b, &reg); err != nil || reg.Subject == "" {
		return nil, fmt.Errorf("%s: not a registration", path)
	}
	if server != "" {
		reg.Server = server
	}
	return newClient(reg.Server, reg.Subject, key, clk), nil
}

// visits is the repeatable --travel flag, REGION:DATE.
type visits []protocol.Visit

func (v *visits) String() string { return "" }

func (v *visits) Set(s string) error {
	region, date, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("want REGION:YYYY-MM-DD, e.g. 440111:2026-11-24")
	}
	*v = append(*v, protocol.Visit{Region: region, Date: date})
	return nil
}

func declare(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := flag.NewFlagSet("holder declare", flag.ContinueOnError)
	server := fl.String("server", "", "the authority (default the registration's)")
	keyPath := fl.String("key", "", "holder private key")
	regPath := fl.String("registration", "", "the registration file (default registration.json beside --key)")
	fever := fl.Bool("fever", false, "the holder has a fever")
	symptoms := fl.Bool("symptoms", false, "the holder has symptoms (cough, sore throat, loss of smell or taste)")
	contact := fl.Bool("contact", false, "the holder was in contact with a case")
	var travel visits
	fl.Var(&travel, "travel", "a place the holder was: REGION:YYYY-MM-DD, a GB/T 2260 region code and a day (repeatable)")
	out := fl.String("out", "", "file to write the credential to")
	asJSON := fl.Bool("json", false, "print the status as JSON")
	if err := cli.Parse(fl, args, "key", "out"); err != nil {
		return err
	}
	c, err := registered(*server, *keyPath, *regPath, clk)
	if err != nil {
		return err
	}
	var res protocol.DeclarationResponse
	if err := c.call(http.MethodPost, protocol.PathDeclare, protocol.Declaration{Fever: *fever, Symptoms: *symptoms,
		Contact: *contact, Travel: travel}, &res); err != nil {
		return err
	}
	if err := os.WriteFile(*out, res.Credential, 0o644); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res.Status)
	}
	st := res.Status
	fmt.Fprintf(stdout, "%s (%s)", st.Colour, strings.Join(st.Reasons, ", "))
	if st.Colour != "green" && !st.QuarantineEnd.IsZero() {
		fmt.Fprintf(stdout, ", quarantine until %s", st.QuarantineEnd.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "; credential: %s\n", *out)
	return nil
}

func status(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := flag.NewFlagSet("holder status", flag.ContinueOnError)
	server := fl.String("server", "", "the authority (default the registration's)")
	keyPath := fl.String("key", "", "holder private key")
	regPath := fl.String("registration", "", "the registration file (default registration.json beside --key)")
	asJSON := fl.Bool("json", false, "print JSON")
	if err := cli.Parse(fl, args, "key"); err != nil {
		return err
	}
	c, err := registered(*server, *keyPath, *regPath, clk)
	if err != nil {
		return err
	}
	var st protocol.HolderStatus
	if err := c.call(http.MethodGet, protocol.PathHolderStatus, nil, &st); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	now := clk.Now()
	t := func(x time.Time) string { return x.UTC().Format(time.RFC3339) }
	if st.Colour == "" {
		fmt.Fprintln(stdout, "colour: none yet (declare to get a code)")
	} else {
		fmt.Fprintf(stdout, "colour: %s (%s) since %s\n", st.Colour, strings.Join(st.Reasons, ", "), t(st.Since))
	}
	switch {
	case st.Colour == "green" || st.Colour == "" || st.QuarantineEnd.IsZero():
	case st.QuarantineEnd.After(now):
		fmt.Fprintf(stdout, "quarantine until: %s\n", t(st.QuarantineEnd))
	default:
		fmt.Fprintf(stdout, "quarantine ended: %s; a declaration with nothing to declare turns the code green\n", t(st.QuarantineEnd))
	}
	if st.NextDeclaration.After(now) {
		fmt.Fprintf(stdout, "next declaration: %s\n", t(st.NextDeclaration))
	} else {
		fmt.Fprintln(stdout, "next declaration: now")
	}
	for _, h := range st.History {
		fmt.Fprintf(stdout, "  %s  %-6s  %s (%s)\n", t(h.At), h.Colour, strings.Join(h.Reasons, ", "), h.Cause)
	}
	return nil
}
