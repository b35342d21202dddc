// Command checkpointctl is the technician's and supervisor's tool. It
// verifies one code offline, exactly as the checkpoint would, and reads
// the codes in image files:
//
//	checkpointctl verify (--text TEXT | --image FILE) --trust trust.cbor --root root.pub
//	                     [--revocations FILE] [--policy FILE] [--id-number N]
//	                     [--at TIME] [--clock-uncertainty D] [--json]
//
//	checkpointctl decode [--json] IMAGE...
//
//	checkpointctl passwd < secret  (the Argon2id hash of a guard's PIN or a supervisor's password)
//
// and it talks to checkpointd's local API (internal/localapi) as a
// supervisor: the box's status, its log, figures, signed exports, the
// check of the hash chain, a sync now, the retention applied now:
//
//	checkpointctl status [--save-device-pub FILE]
//	checkpointctl logs [--from T] [--to T] [--outcome O] [--reason R] [--colour C] [--lane L]
//	                   [--guard G] [--kind K] [--limit N] [--before SEQ]
//	checkpointctl stats [--from T] [--to T] [--step hour|day]
//	checkpointctl export --out FILE [--format csv|jsonl] [--encrypt-to supervisor.pub] [filter flags]
//	checkpointctl verify-export FILE [--manifest FILE.manifest.json] --device-pub device.pub [--key supervisor.key]
//	checkpointctl verify-log
//	checkpointctl sync
//	checkpointctl purge [--unsent --yes]
//	checkpointctl keygen --out NAME   (a supervisor's key pair for encrypted exports)
//
// Each of these prints a table, or JSON with --json. They reach the box
// on its socket (--socket, default /run/checkpoint/api.sock) or over HTTPS
// (--url https://box:8443 --pin sha256:..., the fingerprint status shows
// on the box), as --user (or CHECKPOINT_USER), with the password from
// CHECKPOINT_PASSWORD, --password-file, or asked on the terminal. With
// --db FILE they read a copy of a box's database, or the database of a
// box whose checkpointd is stopped, read-only and in this process
// (--store-key to open the masked names, --device-key to sign exports);
// such a reading is not recorded in the box's log, and sync and purge
// are refused. Times are RFC 3339, or today, yesterday or a date
// (2026-11-30) meaning that local day.
//
// Exit status: 0 when all is well; 1 when the answer is bad news (verify
// refused or referred the code, verify-log found a problem, verify-export
// failed, the sync failed); 2 for a usage or configuration error (a
// missing file, a bad flag) and any other failure; 3 when the box refused
// the caller (wrong password, locked account, a local user outside the
// socket's group); 4 when the box cannot be reached.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/localapi"
	"github.com/checkpointd/checkpoint/internal/passhash"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/verify"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{clock: clock.System{}, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv: os.Getenv, loc: time.Local})
	stop()
	os.Exit(code)
}

// env is what a run of the tool sees of the world.
type env struct {
	clock          clock.Clock
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	loc            *time.Location // where "today" is
}

const usage = `usage: checkpointctl <command> [flags]

commands:
  verify         decode and verify one code offline, and print the decision
  decode         print the QR texts in image files and how long decoding took
  passwd         read a guard's PIN or a supervisor's password on standard input and print its hash for the configuration

  status         the box: lanes, last passage, unsent events, sync, lists, clock, disk, HTTPS fingerprint
  logs           the log, newest first, a page at a time (filters: --from --to --outcome --reason --colour --lane --guard --kind)
  stats          passes, refusals by reason, referrals, fevers, ID-only passes, overrides, offline time, per hour or day
  export         the log as CSV or JSON Lines with a signed manifest (--out FILE; --encrypt-to a supervisor's key)
  verify-export  check an export against its manifest and the box's public key
  verify-log     check the box's hash chain
  sync           sync with the authority now
  purge          apply the retention now (--unsent --yes: also old events the authority never received)
  keygen         make a supervisor's key pair for encrypted exports

The supervisor's commands reach checkpointd on --socket (default /run/checkpoint/api.sock)
or --url https://HOST:PORT --pin sha256:HEX, as --user (or $CHECKPOINT_USER), with the
password from $CHECKPOINT_PASSWORD, --password-file or the terminal; or read a database
file with --db FILE (read-only, not recorded in its log). Add --json for JSON.

Exit status: 0 ok; 1 bad news (refused code, log problem, export fails its check, sync
failed); 2 usage or other error; 3 refused by the box (password, lock, group); 4 the box
cannot be reached.

Run checkpointctl <command> -h for the flags of a command.
`

// errRefused is verify's way of asking for exit status 1.
var errRefused = errors.New("not passed")

// errBadNews is a command's way of asking for exit status 1 once it has
// said what is wrong.
var errBadNews = errors.New("bad news")

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "verify":
		err = verifyCmd(args[1:], e.clock, e.stdout)
	case "decode":
		err = decodeCmd(args[1:], e.clock, e.stdout)
	case "passwd":
		err = passwdCmd(args[1:], e.stdin, e.stdout)
	case "keygen":
		err = keygenCmd(args[1:], e)
	case "verify-export":
		err = verifyExportCmd(args[1:], e)
	default:
		cmd, ok := apiCommands[args[0]]
		if !ok {
			fmt.Fprintf(e.stderr, "checkpointctl: unknown command %q\n\n%s", args[0], usage)
			return 2
		}
		err = cmd(ctx, args[1:], e)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errRefused), errors.Is(err, errBadNews):
		return 1
	case errors.Is(err, localapi.ErrRefused):
		fmt.Fprintf(e.stderr, "checkpointctl %s: %v\n", args[0], err)
		return 3
	case errors.Is(err, localapi.ErrUnreachable):
		fmt.Fprintf(e.stderr, "checkpointctl %s: %v\n", args[0], err)
		fmt.Fprintln(e.stderr, "(is checkpointd running, with an [[api.supervisor]] configured? is your user in the socket's group? are --url and --pin the box's?)")
		return 4
	default:
		fmt.Fprintf(e.stderr, "checkpointctl %s: %v\n", args[0], err)
		return 2
	}
}

// readFile reads an input file; a missing one is a usage error naming it.
func readFile(what, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usagef("%s file %s does not exist", what, path)
	}
	return data, err
}

func verifyCmd(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := flag.NewFlagSet("checkpointctl verify", flag.ContinueOnError)
	text := fl.String("text", "", "QR text of the code")
	imagePath := fl.String("image", "", "image of the code (PNG, JPEG or any format OpenCV reads)")
	trustPath := fl.String("trust", "", "signed trust list")
	rootPath := fl.String("root", "", "pinned root public key")
	revPath := fl.String("revocations", "", "signed revocation list (default: revocations not checked)")
	policyPath := fl.String("policy", "", "policy file, JSON (default: the built-in policy)")
	idNumber := fl.String("id-number", "", "ID number read from the holder's ID card (18 characters), to match with the code")
	var at cli.Time
	fl.Var(&at, "at", "verification time (default now)")
	uncertainty := fl.Duration("clock-uncertainty", 0, "how far the verification time may be off (negative: unknown)")
	asJSON := fl.Bool("json", false, "print one JSON object")
	if err := cli.Parse(fl, args, "trust", "root"); err != nil {
		return err
	}
	if (*text == "") == (*imagePath == "") {
		return cli.Usagef("give exactly one of --text and --image")
	}
	if *idNumber != "" {
		if _, err := credential.ParseID(*idNumber); err != nil {
			return cli.Usagef("--id-number: %v", err)
		}
	}

	root, err := keyfile.ReadPublic(*rootPath)
	if errors.Is(err, fs.ErrNotExist) {
		return cli.Usagef("root key file %s does not exist", *rootPath)
	}
	if err != nil {
		return err
	}
	data, err := readFile("trust list", *trustPath)
	if err != nil {
		return err
	}
	tl, err := trust.Parse(data, root)
	if err != nil {
		return cli.Usagef("trust list %s: %v", *trustPath, err)
	}
	in := verify.Input{Trust: tl, Policy: verify.DefaultPolicy(), IDNumber: *idNumber}
	if *revPath != "" {
		data, err := readFile("revocation list", *revPath)
		if err != nil {
			return err
		}
		rl, err := trust.ParseRevocations(data, root)
		if err != nil {
			return cli.Usagef("revocation list %s: %v", *revPath, err)
		}
		in.Revocations = trust.NewRevocationSet(rl)
	}
	if *policyPath != "" {
		data, err := readFile("policy", *policyPath)
		if err != nil {
			return err
		}
		p, err := passage.ParsePolicy(data)
		if err != nil {
			return cli.Usagef("%s: %v", *policyPath, err)
		}
		in.Policy = p.Policy
	}

	source := "text"
	in.Text = *text
	if *imagePath != "" {
		source = *imagePath
		texts, err := decodeImage(*imagePath, clk)
		if err != nil {
			return err
		}
		if len(texts) == 0 {
			return report(stdout, *asJSON, source, nil, verify.Decision{
				Outcome: verify.Refuse, Reasons: []verify.Reason{verify.Malformed}, Detail: "no QR code found in the image",
			})
		}
		in.Text = texts[0]
	}
	in.Now = verify.Instant{Time: at.Or(clk.Now()), Uncertainty: *uncertainty}
	d := verify.Verify(in)
	return report(stdout, *asJSON, source, in.Revocations, d)
}

// decodeImage reads the codes in an image file as decode does.
func decodeImage(path string, clk clock.Clock) ([]string, error) {
	img, err := readImage(path)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	d := scanner.NewDecoder(scanner.DecoderOptions{Still: true, Clock: clk})
	defer d.Close()
	var texts []string
	for _, r := range d.Decode(img) {
		texts = append(texts, r.Text)
	}
	return texts, nil
}

// readImage loads an image file in grey, in any format OpenCV reads.
func readImage(path string) (gocv.Mat, error) {
	if _, err := os.Stat(path); err != nil {
		return gocv.Mat{}, cli.Usagef("image file %s: %v", path, err)
	}
	img := gocv.IMRead(path, gocv.IMReadGrayScale)
	if img.Empty() {
		img.Close()
		return gocv.Mat{}, cli.Usagef("%s: not an image OpenCV can read", path)
	}
	return img, nil
}

// result is the JSON form of a decision.
type result struct {
	Source             string           `json:"source"`
	Decision           verify.Outcome   `json:"decision"`
	Reasons            []verify.Reason  `json:"reasons"`
	Words              words            `json:"words"`
	ReasonWords        []reasonWords    `json:"reason_words"`
	Detail             string           `json:"detail,omitempty"`
	Repeat             bool             `json:"repeat"`
	RevocationsChecked *bool            `json:"revocations_checked"`
	Code               *verify.CodeInfo `json:"code,omitempty"`
}

type words struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
}

type reasonWords struct {
	Code verify.Reason `json:"code"`
	words
}

func report(w io.Writer, asJSON bool, source string, revs verify.Revocations, d verify.Decision) error {
	checked := revs != nil
	if asJSON {
		r := result{Source: source, Decision: d.Outcome, Reasons: d.Reasons, Detail: d.Detail,
			Repeat: d.Repeat, RevocationsChecked: &checked, Code: d.Code}
		if r.Reasons == nil {
			r.Reasons = []verify.Reason{}
		}
		r.Words.ZH, r.Words.EN = d.Outcome.Words()
		r.ReasonWords = []reasonWords{}
		for _, reason := range d.Reasons {
			rw := reasonWords{Code: reason}
			rw.ZH, rw.EN = reason.Words()
			r.ReasonWords = append(r.ReasonWords, rw)
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		zh, en := d.Outcome.Words()
		fmt.Fprintf(w, "%-7s %s  %s\n", strings.ToUpper(d.Outcome.String()), zh, en)
		for _, reason := range d.Reasons {
			zh, en := reason.Words()
			fmt.Fprintf(w, "  - %s: %s / %s\n", reason, zh, en)
		}
		if d.Detail != "" {
			fmt.Fprintf(w, "  detail: %s\n", d.Detail)
		}
		if c := d.Code; c != nil {
			kind := "phone code"
			if c.Static {
				kind = "paper code"
			}
			fmt.Fprintf(w, "  %s: %s, %s, region %s, issuer %s (%s)\n",
				kind, c.Status, c.MaskedName, c.Region, c.Issuer, c.IssuerName)
			fmt.Fprintf(w, "  valid %s to %s\n", c.IssuedAt.Format(time.RFC3339), c.Expires.Format(time.RFC3339))
			if c.PresentedAt != nil {
				fmt.Fprintf(w, "  shown from the phone at %s\n", c.PresentedAt.Format(time.RFC3339))
			}
		}
		if !checked {
			fmt.Fprintln(w, "  revocations: not checked (no --revocations)")
		}
	}
	if d.Outcome != verify.Pass {
		return errRefused
	}
	return nil
}

// decoded is one line of decode's JSON output.
type decoded struct {
	File     string   `json:"file"`
	Texts    []string `json:"texts"`
	DecodeMS float64  `json:"decode_ms"`
}

func decodeCmd(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := flag.NewFlagSet("checkpointctl decode", flag.ContinueOnError)
	asJSON := fl.Bool("json", false, "print one JSON object per image")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.UsageError{Msg: err.Error()}
	}
	if fl.NArg() == 0 {
		return cli.Usagef("give one or more image files")
	}
	d := scanner.NewDecoder(scanner.DecoderOptions{Still: true, Clock: clk})
	defer d.Close()
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for _, path := range fl.Args() {
		img, err := readImage(path)
		if err != nil {
			return err
		}
		start := clk.Now()
		results := d.Decode(img)
		took := clk.Now().Sub(start)
		img.Close()
		out := decoded{File: path, Texts: []string{}, DecodeMS: float64(took.Microseconds()) / 1000}
		for _, r := range results {
			out.Texts = append(out.Texts, r.Text)
		}
		if *asJSON {
			if err := enc.Encode(out); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(stdout, "%s: %d code(s) in %.2f ms\n", path, len(out.Texts), out.DecodeMS)
		for _, t := range out.Texts {
			fmt.Fprintf(stdout, "  %s\n", t)
		}
	}
	return nil
}

// passwdCmd reads a PIN (the first line of in) and prints its Argon2id
// hash, for a guard's entry in the configuration.
func passwdCmd(args []string, in io.Reader, out io.Writer) error {
	fl := flag.NewFlagSet("checkpointctl passwd", flag.ContinueOnError)
	if err := cli.Parse(fl, args); err != nil {
		return err
	}
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && line == "" {
		return cli.Usagef("give the PIN on standard input")
	}
	hash, err := passhash.Hash(strings.TrimRight(line, "\r\n"))
	if err != nil {
		return cli.UsageError{Msg: err.Error()}
	}
	fmt.Fprintln(out, hash)
	return nil
}
