package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/protocol"
)

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// serve runs the authority's HTTP API until SIGINT or SIGTERM.
func serve(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := newFlags("serve")
	keys := fl.String("keys", "", "directory of the authority's keys (issuer.key, list.key, pseudonym.key; admin.token is made there)")
	dbPath := fl.String("db", "", dbHelp)
	trustPath := fl.String("trust", "", "signed trust list to serve (it must name list.pub)")
	listen := fl.String("listen", "127.0.0.1:8420", "address to listen on")
	code := fl.String("issuer-code", "HC", "issuer code of the credentials it issues to holders")
	region := fl.String("region", "", regionHelp+" (the credentials it issues to holders carry it; without it, declarations are refused)")
	rulesPath := fl.String("rules", "", "rules file deciding holders' colours, JSON (default: the built-in rules, configs/rules.json)")
	var feedKeys, realnameKeys cli.List
	fl.Var(&feedKeys, "feed-key", "a health department's feed public key, [KIND,...=]FILE: the kinds it may send (risk_areas, cases, close_contacts; default all) (repeatable; none: every feed is refused)")
	fl.Var(&realnameKeys, "realname-key", "a real-name service's public key whose assertions register holders (repeatable)")
	codeValidity := fl.Duration("code-validity", 15*time.Minute, "how long a registration code lasts")
	keep := fl.Duration("keep-events", 28*24*time.Hour, "how long the checkpoints' events are kept (0: for ever); checked every hour")
	tlsCert := fl.String("tls-cert", "", "serve HTTPS with this certificate (PEM); needed off loopback unless a TLS proxy on this host fronts it")
	tlsKey := fl.String("tls-key", "", "the certificate's private key (PEM)")
	if err := cli.Parse(fl, args, "keys", "db"); err != nil {
		return err
	}
	if *keep < 0 || (*keep > 0 && *keep < 24*time.Hour) {
		return cli.Usagef("--keep-events must be 0 (keep them all) or at least 24h")
	}
	if *codeValidity <= 0 || *codeValidity > 24*time.Hour {
		return cli.Usagef("--code-validity must be positive and at most 24h")
	}
	holderOpts, err := holderOptions(*rulesPath, feedKeys, realnameKeys)
	if err != nil {
		return err
	}
	holderOpts.CodeValidity = *codeValidity
	if (*tlsCert == "") != (*tlsKey == "") {
		return cli.Usagef("--tls-cert and --tls-key go together")
	}
	var tlsConfig *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return cli.Usagef("TLS certificate: %v", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	issuer, err := readPrivate(filepath.Join(*keys, "issuer.key"))
	if err != nil {
		return err
	}
	list, err := readPrivate(filepath.Join(*keys, "list.key"))
	if err != nil {
		return err
	}
	pk, err := readPseudonymKey("", filepath.Join(*keys, "issuer.key"))
	if err != nil {
		return err
	}
	token, err := keyfile.CreateToken(filepath.Join(*keys, "admin.token"))
	if errors.Is(err, keyfile.ErrTooOpen) {
		return cli.UsageError{Msg: err.Error()}
	}
	if err != nil {
		return err
	}
	db, err := openStorage(*dbPath, clk)
	if err != nil {
		return err
	}
	defer db.Close()
	if *trustPath != "" {
		raw, err := os.ReadFile(*trustPath)
		if err != nil {
			return cli.Usagef("trust list %s: %v", *trustPath, err)
		}
		if err := db.SetTrustList(raw); err != nil {
			return err
		}
	}
	if w := regionWarning(*region); w != "" {
		fmt.Fprintln(os.Stderr, "authority serve: "+w)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	scheme := "https"
	if tlsConfig == nil {
		scheme = "http"
		if !loopback(ln.Addr()) {
			// The admin token, enrolment tokens and the event logs would
			// cross the network in the clear.
			log.Warn("serving plain HTTP off loopback: tokens and event logs cross the network unencrypted; use --tls-cert and --tls-key (docs/sync.md)",
				"component", "authority", "listen", ln.Addr().String())
		}
	}
	opts := holderOpts
	opts.Clock, opts.Log, opts.AdminToken, opts.Region = clk, log, token, *region
	srv := authority.New(db, authority.Keys{Issuer: issuer, IssuerCode: *code, List: list, Pseudonym: pk}, opts)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	retention := make(chan struct{})
	go func() {
		defer close(retention)
		if *keep > 0 {
			keepEvents(ctx, db, clk, *keep, log)
		}
	}()
	fmt.Fprintf(stdout, "authority serving on %s://%s\n", scheme, ln.Addr())
	err = srv.Serve(ctx, ln, tlsConfig)
	stop()
	<-retention // before the database closes
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loopback reports whether addr is a loopback address.
func loopback(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// adminCall posts an admin request to a serving authority and decodes
// its answer into res.
func adminCall(server, tokenFile, path string, req, res any) error {
	body, err := protocol.Enc.Marshal(req)
	if err != nil {
		return err
	}
	b, err := adminPostRaw(server, tokenFile, path, body)
	if err != nil {
		return err
	}
	return protocol.Dec.Unmarshal(b, res)
}

// adminPostRaw posts body, already encoded, as an admin request to a
// serving authority and returns its answer.
func adminPostRaw(server, tokenFile, path string, body []byte) ([]byte, error) {
	tok, err := keyfile.ReadToken(tokenFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, cli.Usagef("token file %s does not exist", tokenFile)
	}
	if errors.Is(err, keyfile.ErrTooOpen) {
		return nil, cli.UsageError{Msg: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	r, err := http.NewRequest(http.MethodPost, strings.TrimRight(server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, cli.Usagef("--server: %v", err)
	}
	r.Header.Set(protocol.HeaderAdmin, "Bearer "+tok)
	r.Header.Set("Content-Type", protocol.ContentType)
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

func enrollToken(args []string, _ clock.Clock, stdout io.Writer) error {
	fl := newFlags("enroll-token")
	server := fl.String("server", "", "the serving authority")
	token := fl.String("token", "", "its admin token file")
	name := fl.String("name", "", "the checkpoint the token is for")
	if err := cli.Parse(fl, args, "server", "token", "name"); err != nil {
		return err
	}
	var res protocol.AdminTokenResponse
	if err := adminCall(*server, *token, protocol.PathAdminToken, protocol.AdminToken{Name: *name}, &res); err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Token)
	return nil
}

func status(args []string, _ clock.Clock, stdout io.Writer) error {
	fl := newFlags("status")
	server := fl.String("server", "", "the serving authority")
	token := fl.String("token", "", "its admin token file")
	asJSON := fl.Bool("json", false, "print JSON")
	if err := cli.Parse(fl, args, "server", "token"); err != nil {
		return err
	}
	var res protocol.AdminStatus
	if err := adminCall(*server, *token, protocol.PathAdminStatus, struct{}{}, &res); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "revocations: version %d, %d entries\n", res.RevocationVersion, res.Revocations)
	for _, d := range res.Devices {
		fmt.Fprintf(stdout, "checkpoint %s (%s): %d events held, enrolled %s\n", d.ID, d.Name, d.Mark, d.Enrolled.Format(time.RFC3339))
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
