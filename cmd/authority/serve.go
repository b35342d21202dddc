package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/store"
)

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// serve runs the authority's HTTP API until SIGINT or SIGTERM.
func serve(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := newFlags("serve")
	keys := fl.String("keys", "", "directory of the authority's keys (issuer.key, list.key, pseudonym.key; admin.token is made there)")
	dbPath := fl.String("db", "", "database file")
	trustPath := fl.String("trust", "", "signed trust list to serve (it must name list.pub)")
	listen := fl.String("listen", "127.0.0.1:8420", "address to listen on")
	code := fl.String("issuer-code", "HC", "issuer code of the credentials it issues to holders")
	if err := cli.Parse(fl, args, "keys", "db"); err != nil {
		return err
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
	token, err := adminToken(filepath.Join(*keys, "admin.token"))
	if err != nil {
		return err
	}
	db, err := store.OpenAuthority(*dbPath)
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
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := authority.New(db, authority.Keys{Issuer: issuer, IssuerCode: *code, List: list, Pseudonym: pk},
		authority.Options{Clock: clk, Log: log, AdminToken: token})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "authority serving on http://%s\n", ln.Addr())
	if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// adminToken reads the admin token file, making one if there is none.
func adminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var t [24]byte
	if _, err := rand.Read(t[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(t[:])
	return token, os.WriteFile(path, []byte(token+"\n"), 0o600)
}

// adminCall posts an admin request to a serving authority.
func adminCall(server, tokenFile, path string, req, res any) error {
	tok, err := os.ReadFile(tokenFile)
	if errors.Is(err, os.ErrNotExist) {
		return cli.Usagef("token file %s does not exist", tokenFile)
	}
	if err != nil {
		return err
	}
	body, err := protocol.Enc.Marshal(req)
	if err != nil {
		return err
	}
	r, err := http.NewRequest(http.MethodPost, strings.TrimRight(server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return cli.Usagef("--server: %v", err)
	}
	r.Header.Set(protocol.HeaderAdmin, "Bearer "+strings.TrimSpace(string(tok)))
	r.Header.Set("Content-Type", protocol.ContentType)
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return protocol.Dec.Unmarshal(b, res)
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
