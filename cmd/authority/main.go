// Command authority is the reference health-code authority: it makes the
// root, issuer, list, pseudonym and event keys, signs trust lists and revocation
// lists, issues credentials, and serves checkpoints and holders over HTTP:
// holders register their phones with a proof of who they are and declare,
// and its rules decide their colours from the declarations and the health
// departments' risk feeds (docs/authority.md). It exists so that the whole
// system can run and be tested on one machine; a real authority follows
// docs/credential.md, docs/sync.md and docs/authority.md with its own
// systems. It also stands in for a real-name service (realname-assert)
// and a health department (feed) in the demo.
//
//	authority keygen --out DIR [--kind authority|feed|realname]
//	authority trust --root DIR/root.key --issuer DIR/issuer.pub [--region R] [--event-key DIR/event.pub] --out trust.cbor
//	authority issue --issuer DIR/issuer.key --holder holder.pub --id-number N --name NAME
//	                --colour green|yellow|red --region R [--at TIME] [--valid 24h] --out credential.cbor
//	authority revoke --root DIR/root.key --id-number N [--before TIME] --list revocations.cbor
//	authority revoke --server URL --token FILE --id-number N [--before TIME]
//	authority serve --keys DIR --db FILE|postgres://… --trust trust.cbor [--region R] [--listen 127.0.0.1:8420]
//	                [--tls-cert FILE --tls-key FILE] [--rules rules.json] [--feed-key [KIND,...=]feed.pub]...
//	                [--realname-key realname.pub]... [--code-validity 15m] [--keep-events 672h]
//	authority enroll-token --server URL --token FILE --name NAME
//	authority status --server URL --token FILE
//	authority registration-code --server URL --token FILE --id-number N --name NAME --operator LABEL
//	authority feed --server URL --token FILE --key feed.key --kind risk_areas|cases|close_contacts
//	               --version V (--csv FILE | --json FILE) [--at TIME]
//	authority realname-assert --key realname.key --id-number N --name NAME --holder holder.pub [--valid 10m] --out FILE
//	authority unseal --keys DIR --db FILE|postgres://…
//
// --db is a bbolt file's path or a PostgreSQL connection string
// (docs/database.md). ID numbers must be valid 18-character GB 11643
// numbers. --region is the issuing region the credentials carry, e.g. 44
// (a province): never a part of the holder's ID number. Times are RFC
// 3339, durations Go-style (24h). Exit status 2 means a usage error.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/trust"
)

func main() {
	os.Exit(run(os.Args[1:], clock.System{}, os.Stdout, os.Stderr))
}

const usage = `usage: authority <command> [flags]

commands:
  keygen         make root, issuer, list, pseudonym and event keys (or a feed or real-name service key)
  trust          sign a trust list naming issuer and list keys
  issue          issue a credential to a holder
  revoke         add a revocation (to a list file, or to a serving authority)
  serve          serve checkpoints and holders over HTTP
  enroll-token   make a one-time token for enrolling a checkpoint
  status         show the serving authority's checkpoints and revocations
  registration-code
                 make a one-time code for a person to register their phone with
  feed           send a health department's signed risk feed (risk areas, cases, close contacts)
  realname-assert
                 sign a real-name service's assertion that a person controls a holder key
  unseal         read the ID numbers checkpoints sealed to the event key (a bbolt file: server stopped)

Run authority <command> -h for the flags of a command.
`

func run(args []string, clk clock.Clock, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func([]string, clock.Clock, io.Writer) error{
		"keygen": keygen, "trust": signTrust, "revoke": revoke, "unseal": unseal,
		"registration-code": registrationCode, "feed": feedCmd, "realname-assert": realnameAssert,
		"issue": func(args []string, clk clock.Clock, stdout io.Writer) error {
			return issue(args, clk, stdout, stderr)
		},
		"serve": serve, "enroll-token": enrollToken, "status": status,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "authority: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	err := cmd(args[1:], clk, stdout)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case cli.IsUsage(err), errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stderr, "authority %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "authority %s: %v\n", args[0], err)
		return 1
	}
}

func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet("authority "+name, flag.ContinueOnError)
}

// readPrivate reads a private key; a missing file is a usage error naming it.
func readPrivate(path string) (ed25519.PrivateKey, error) {
	k, err := keyfile.ReadPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usagef("key file %s does not exist", path)
	}
	if errors.Is(err, keyfile.ErrTooOpen) {
		return nil, cli.UsageError{Msg: err.Error()}
	}
	return k, err
}

func readPublic(path string) (ed25519.PublicKey, error) {
	k, err := keyfile.ReadPublic(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usagef("key file %s does not exist", path)
	}
	return k, err
}

func readPseudonymKey(flagValue, besides string) ([]byte, error) {
	path := flagValue
	if path == "" {
		path = filepath.Join(filepath.Dir(besides), "pseudonym.key")
	}
	k, err := keyfile.ReadPseudonymKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usagef("pseudonym key %s does not exist (authority keygen makes it; --pseudonym-key names another)", path)
	}
	return k, err
}

func keygen(args []string, _ clock.Clock, stdout io.Writer) error {
	fl := newFlags("keygen")
	out := fl.String("out", "", "directory to write root.key, root.pub, issuer.key, issuer.pub, list.key, list.pub and pseudonym.key to")
	kind := fl.String("kind", "authority", "authority: the authority's keys; feed: a health department's feed key (feed.key, feed.pub); "+
		"realname: a real-name service's key (realname.key, realname.pub)")
	if err := cli.Parse(fl, args, "out"); err != nil {
		return err
	}
	switch *kind {
	case "authority":
	case "feed", "realname":
		return keygenSigner(*out, *kind, stdout)
	default:
		return cli.Usagef("--kind %q is not authority, feed or realname", *kind)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	for _, name := range []string{"root", "issuer", "list"} {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		if err := writeKeyPair(*out, name, pub, priv); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s key %s: %s.key, %s.pub\n", name, hex.EncodeToString(credential.KeyIDOf(pub)), name, name)
	}
	wrote, err := keyfile.CreatePseudonymKey(filepath.Join(*out, "pseudonym.key"))
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintln(stdout, "pseudonym key: pseudonym.key")
	} else {
		fmt.Fprintln(stdout, "pseudonym key: kept the existing pseudonym.key (replacing it would change every pseudonym)")
	}
	wrote, err = keyfile.CreateEventKeys(filepath.Join(*out, "event.key"), filepath.Join(*out, "event.pub"))
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintln(stdout, "event key (X25519, checkpoints seal ID numbers to it): event.key, event.pub")
	} else {
		fmt.Fprintln(stdout, "event key: kept the existing event.key (replacing it would make sealed records unreadable)")
	}
	return nil
}

// writeKeyPair writes dir/name.key (mode 0600) and dir/name.pub.
func writeKeyPair(dir, name string, pub ed25519.PublicKey, priv ed25519.PrivateKey) error {
	if err := keyfile.WritePrivate(filepath.Join(dir, name+".key"), priv); err != nil {
		return err
	}
	return keyfile.WritePublic(filepath.Join(dir, name+".pub"), pub)
}

func signTrust(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := newFlags("trust")
	rootPath := fl.String("root", "", "root private key")
	var issuers, regions, listKeys cli.List
	fl.Var(&issuers, "issuer", "issuer public key to list (repeatable)")
	fl.Var(&listKeys, "list-key", "list key to delegate to (repeatable; default list.pub beside --root, if there)")
	fl.Var(&regions, "region", "region code prefix the issuers may issue for (repeatable; none: any region)")
	eventKey := fl.String("event-key", "", "the authority's X25519 event public key (default event.pub beside --root, if there)")
	code := fl.String("issuer-code", "HC", "issuer code the listed keys' credentials carry")
	name := fl.String("issuer-name", "Health Code Authority", "issuer name shown to guards")
	var at, from, until cli.Time
	fl.Var(&at, "at", "signing time (default now)")
	fl.Var(&from, "key-valid-from", "start of the keys' validity (default 30 days before --at)")
	fl.Var(&until, "key-valid-until", "end of the keys' validity (default a year after --at)")
	valid := fl.Duration("valid", 30*24*time.Hour, "how long the list stays current")
	version := fl.Uint64("version", 0, "list version (default the signing time in Unix seconds)")
	out := fl.String("out", "", "file to write the signed trust list to")
	if err := cli.Parse(fl, args, "root", "out"); err != nil {
		return err
	}
	if len(issuers) == 0 {
		return cli.Usagef("--issuer is required")
	}
	root, err := readPrivate(*rootPath)
	if err != nil {
		return err
	}
	now := at.Or(clk.Now()).UTC().Truncate(time.Second)
	l := &trust.List{Version: *version, IssuedAt: now, Expires: now.Add(*valid)}
	if l.Version == 0 {
		l.Version = uint64(now.Unix())
	}
	for _, p := range issuers {
		pub, err := readPublic(p)
		if err != nil {
			return err
		}
		l.Issuers = append(l.Issuers, trust.Issuer{
			PublicKey: pub, Issuer: *code, Name: *name, Regions: regions,
			NotBefore: from.Or(now.Add(-30 * 24 * time.Hour)), NotAfter: until.Or(now.Add(365 * 24 * time.Hour)),
		})
	}
	if len(listKeys) == 0 {
		if p := filepath.Join(filepath.Dir(*rootPath), "list.pub"); fileExists(p) {
			listKeys = append(listKeys, p)
		}
	}
	for _, p := range listKeys {
		pub, err := readPublic(p)
		if err != nil {
			return err
		}
		l.ListKeys = append(l.ListKeys, trust.ListKey{PublicKey: pub,
			NotBefore: from.Or(now.Add(-30 * 24 * time.Hour)), NotAfter: until.Or(now.Add(365 * 24 * time.Hour))})
	}
	if *eventKey == "" {
		if p := filepath.Join(filepath.Dir(*rootPath), "event.pub"); fileExists(p) {
			*eventKey = p
		}
	}
	if *eventKey != "" {
		k, err := keyfile.ReadEventPublic(*eventKey)
		if errors.Is(err, fs.ErrNotExist) {
			return cli.Usagef("event key %s does not exist", *eventKey)
		}
		if err != nil {
			return err
		}
		l.EventKey = k.Bytes()
	}
	data, err := trust.Sign(l, root)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trust list version %d with %d issuer key(s) and %d list key(s), current until %s: %s\n",
		l.Version, len(l.Issuers), len(l.ListKeys), l.Expires.Format(time.RFC3339), *out)
	return nil
}

// regionHelp describes the --region flag of issue and serve.
const regionHelp = "the issuing region code, e.g. 44: the region of the issuer's trust-list entry, province (2 digits) or city (4) level"

// regionWarning explains why a region code of more than 4 digits is a poor
// choice, or returns "" for a shorter one: a code carries its region, so a
// county's code narrows the search for the ID number of a holder born there.
func regionWarning(region string) string {
	if len(region) <= 4 {
		return ""
	}
	return fmt.Sprintf("warning: region %s is below city level: a county-level region narrows the guessing space "+
		"(a holder born in that county: 3.65×10^7 candidate ID numbers, under the 10^8 the format aims for); "+
		"issue at province (2 digits) or city (4 digits) level", region)
}

func issue(args []string, clk clock.Clock, stdout, stderr io.Writer) error {
	fl := newFlags("issue")
	issuerPath := fl.String("issuer", "", "issuer private key")
	holderPath := fl.String("holder", "", "holder public key (not for --static)")
	idNumber := fl.String("id-number", "", "holder's ID number")
	name := fl.String("name", "", "holder's name (the credential carries it masked)")
	colour := fl.String("colour", "", "green, yellow or red")
	region := fl.String("region", "", regionHelp)
	code := fl.String("issuer-code", "HC", "issuer code, as on the trust list")
	var at cli.Time
	fl.Var(&at, "at", "issue time (default now)")
	valid := fl.Duration("valid", 24*time.Hour, "validity")
	static := fl.Bool("static", false, "issue a static paper code, without a holder key")
	pseudonymKey := fl.String("pseudonym-key", "", "pseudonym key (default pseudonym.key beside --issuer)")
	out := fl.String("out", "", "file to write the credential to")
	if err := cli.Parse(fl, args, "issuer", "id-number", "name", "colour", "out"); err != nil {
		return err
	}
	if *region == "" {
		return cli.Usagef("--region is required: %s", regionHelp)
	}
	if *holderPath == "" && !*static {
		return cli.Usagef("--holder is required (or --static for a paper code)")
	}
	if *holderPath != "" && *static {
		return cli.Usagef("--holder and --static exclude each other: a paper code has no holder key")
	}
	status, err := credential.ParseStatus(*colour)
	if err != nil {
		return cli.UsageError{Msg: err.Error()}
	}
	if *valid <= 0 {
		return cli.Usagef("--valid must be positive")
	}
	id, err := credential.ParseID(*idNumber)
	if err != nil {
		return cli.Usagef("--id-number: %v", err)
	}
	issuer, err := readPrivate(*issuerPath)
	if err != nil {
		return err
	}
	pk, err := readPseudonymKey(*pseudonymKey, *issuerPath)
	if err != nil {
		return err
	}
	var holder ed25519.PublicKey
	if !*static {
		if holder, err = readPublic(*holderPath); err != nil {
			return err
		}
	}
	cid := make([]byte, credential.IDSize)
	if _, err := rand.Read(cid); err != nil {
		return err
	}
	now := at.Or(clk.Now()).UTC().Truncate(time.Second)
	sub := credential.Pseudonym(pk, id)
	c := &credential.Credential{
		Issuer: *code, ID: cid, Subject: sub, Status: status, Region: *region,
		MaskedName: credential.MaskName(*name), IDHash: credential.IDHash(id, sub),
		IssuedAt: now, Expires: now.Add(*valid), HolderKey: holder,
	}
	data, err := credential.Issue(c, issuer)
	if errors.Is(err, credential.ErrMalformed) {
		return cli.UsageError{Msg: err.Error()}
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return err
	}
	if w := regionWarning(c.Region); w != "" {
		fmt.Fprintln(stderr, "authority issue: "+w)
	}
	kind := "phone"
	if *static {
		kind = "paper (static)"
	}
	fmt.Fprintf(stdout, "%s credential %s: %s, %s, region %s, valid %s to %s: %s\n",
		kind, hex.EncodeToString(cid), status, c.MaskedName, c.Region,
		c.IssuedAt.Format(time.RFC3339), c.Expires.Format(time.RFC3339), *out)
	return nil
}

func revoke(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := newFlags("revoke")
	rootPath := fl.String("root", "", "root private key")
	idNumber := fl.String("id-number", "", "ID number of the subject whose credentials to revoke")
	var at, before cli.Time
	fl.Var(&at, "at", "signing time (default now)")
	fl.Var(&before, "before", "revoke the credentials issued at or before this time (default --at)")
	keep := fl.Duration("keep", 30*24*time.Hour, "how long after --before the entry must stay: the longest credential validity")
	valid := fl.Duration("valid", 7*24*time.Hour, "how long the list stays current")
	list := fl.String("list", "", "revocation list to create or update")
	pseudonymKey := fl.String("pseudonym-key", "", "pseudonym key (default pseudonym.key beside --root)")
	server := fl.String("server", "", "a serving authority to add the revocation to, instead of a list file")
	token := fl.String("token", "", "the serving authority's admin token file")
	if err := cli.Parse(fl, args, "id-number"); err != nil {
		return err
	}
	id, err := credential.ParseID(*idNumber)
	if err != nil {
		return cli.Usagef("--id-number: %v", err)
	}
	if *server != "" {
		if *token == "" {
			return cli.Usagef("--token is required with --server")
		}
		var res map[string]uint64
		err := adminCall(*server, *token, protocol.PathAdminRevoke, protocol.AdminRevoke{IDNumber: id, Before: before.Or(time.Time{})}, &res)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revocation added: revocation list version %d\n", res["version"])
		return nil
	}
	if *rootPath == "" || *list == "" {
		return cli.Usagef("--root and --list are required (or --server and --token)")
	}
	root, err := readPrivate(*rootPath)
	if err != nil {
		return err
	}
	pk, err := readPseudonymKey(*pseudonymKey, *rootPath)
	if err != nil {
		return err
	}
	now := at.Or(clk.Now()).UTC().Truncate(time.Second)
	r := &trust.Revocations{}
	if data, err := os.ReadFile(*list); err == nil {
		if r, err = trust.ParseRevocations(data, root.Public().(ed25519.PublicKey)); err != nil {
			return fmt.Errorf("existing list %s: %w", *list, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	cut := before.Or(now).UTC().Truncate(time.Second)
	kept := r.Entries[:0]
	for _, e := range r.Entries {
		if e.DropAfter.After(now) {
			kept = append(kept, e)
		}
	}
	dropped := len(r.Entries) - len(kept)
	r.Entries = append(kept, trust.Revocation{
		Subject: credential.Pseudonym(pk, id), Before: cut, DropAfter: cut.Add(*keep),
	})
	r.Version = max(r.Version+1, uint64(now.Unix()))
	r.IssuedAt, r.Expires = now, now.Add(*valid)
	data, err := trust.SignRevocations(r, root)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*list, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revocation list version %d: %d entries (%d expired ones dropped), current until %s: %s\n",
		r.Version, len(r.Entries), dropped, r.Expires.Format(time.RFC3339), *list)
	return nil
}
