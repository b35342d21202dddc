// Command holder does what a health-code app on a phone does: it keeps the
// holder key, registers it with the authority on a proof of who the holder
// is, declares (the authority's rules decide the colour and issue a
// credential to that key), asks for the holder's status, and turns the
// credential into a fresh presentation, signed with that key, whenever the
// code is shown.
//
//	holder keygen --out DIR
//	holder register --server URL --key K --id-number N --name NAME (--code CODE | --assertion FILE)
//	holder declare --key K [--fever] [--symptoms] [--contact] [--travel REGION:DATE]... --out F [--json]
//	holder status --key K [--json]
//	holder present --credential F --key K [--at TIME] [--png FILE [--module PX]]
//	holder show --credential F --key K [--listen 127.0.0.1:8080]
//
// register keeps the authority and the holder's subject pseudonym in
// registration.json beside the key, for declare and status. present
// prints the QR text on standard output; show serves a page that shows
// the code and renews it every five seconds, as the app would. Exit status
// 2 means a usage error.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/qrcode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], clock.System{}, os.Stdout, os.Stderr))
}

const usage = `usage: holder <command> [flags]

commands:
  keygen    make the holder key pair
  register  register the holder key with the authority, with a code or a real-name assertion
  declare   declare (fever, symptoms, contact, travel) and get a credential of the colour the rules give
  status    show the holder's colour, why, the quarantine and the next declaration
  present   print the QR text of a fresh presentation (and write it as a PNG)
  show      serve a page showing the code, renewed every five seconds

Run holder <command> -h for the flags of a command.
`

func run(ctx context.Context, args []string, clk clock.Clock, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "keygen":
		err = keygen(args[1:], stdout)
	case "register":
		err = register(args[1:], clk, stdout)
	case "declare":
		err = declare(args[1:], clk, stdout)
	case "status":
		err = status(args[1:], clk, stdout)
	case "present":
		err = present(args[1:], clk, stdout)
	case "show":
		err = show(ctx, args[1:], clk, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "holder: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case cli.IsUsage(err):
		fmt.Fprintf(stderr, "holder %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "holder %s: %v\n", args[0], err)
		return 1
	}
}

func keygen(args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("holder keygen", flag.ContinueOnError)
	out := fl.String("out", "", "directory to write holder.key and holder.pub to")
	if err := cli.Parse(fl, args, "out"); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := keyfile.WritePrivate(filepath.Join(*out, "holder.key"), priv); err != nil {
		return err
	}
	if err := keyfile.WritePublic(filepath.Join(*out, "holder.pub"), pub); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "holder key: %s, %s\n", filepath.Join(*out, "holder.key"), filepath.Join(*out, "holder.pub"))
	return nil
}

// wallet is the phone's state: the credential and, for a phone
// credential, the key that presents it.
type wallet struct {
	credential []byte
	static     bool
	key        ed25519.PrivateKey
}

func openWallet(credPath, keyPath string) (*wallet, error) {
	data, err := os.ReadFile(credPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cli.Usagef("credential file %s does not exist", credPath)
	}
	if err != nil {
		return nil, err
	}
	code, err := credential.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", credPath, err)
	}
	if code.Presented {
		return nil, fmt.Errorf("%s holds a presentation, not a credential", credPath)
	}
	w := &wallet{credential: data, static: code.Credential.Static()}
	if w.static {
		return w, nil
	}
	if keyPath == "" {
		return nil, cli.Usagef("--key is required for a phone credential")
	}
	if w.key, err = readKey(keyPath); err != nil {
		return nil, err
	}
	if !code.Credential.HolderKey.Equal(w.key.Public()) {
		return nil, cli.Usagef("%s is not the holder key of %s", keyPath, credPath)
	}
	return w, nil
}

// text returns the QR text to show at t: a fresh presentation, or the
// paper code as it is.
func (w *wallet) text(t time.Time) (string, error) {
	if w.static {
		return credential.EncodeText(w.credential), nil
	}
	p, err := credential.Present(w.credential, w.key, t)
	if err != nil {
		return "", err
	}
	return credential.EncodeText(p), nil
}

func present(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := flag.NewFlagSet("holder present", flag.ContinueOnError)
	credPath := fl.String("credential", "", "credential file from the authority")
	keyPath := fl.String("key", "", "holder private key")
	var at cli.Time
	fl.Var(&at, "at", "presentation time (default now)")
	pngPath := fl.String("png", "", "also write the code as a PNG image to this file")
	module := fl.Int("module", 6, "size of a QR module in the PNG, in pixels")
	if err := cli.Parse(fl, args, "credential"); err != nil {
		return err
	}
	w, err := openWallet(*credPath, *keyPath)
	if err != nil {
		return err
	}
	text, err := w.text(at.Or(clk.Now()))
	if err != nil {
		return err
	}
	if *pngPath != "" {
		img, err := qrcode.Image(text, *module)
		if err != nil {
			return err
		}
		f, err := os.Create(*pngPath)
		if err != nil {
			return err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, text)
	return nil
}

func show(ctx context.Context, args []string, clk clock.Clock, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("holder show", flag.ContinueOnError)
	credPath := fl.String("credential", "", "credential file from the authority")
	keyPath := fl.String("key", "", "holder private key")
	listen := fl.String("listen", "127.0.0.1:8080", "address to serve the page on")
	if err := cli.Parse(fl, args, "credential"); err != nil {
		return err
	}
	w, err := openWallet(*credPath, *keyPath)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "holder")
	srv := &http.Server{Handler: newPage(w, clk, log), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "showing the code at http://%s/ (Ctrl-C to stop)\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}
