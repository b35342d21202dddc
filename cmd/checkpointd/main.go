// Command checkpointd is the checkpoint daemon: it reads codes from the
// camera, verifies them offline and shows the guard each decision.
//
//	checkpointd --config /etc/checkpoint/checkpoint.toml [--json]
//	checkpointd --config /etc/checkpoint/checkpoint.toml --sync-once
//
// Decisions go to standard output (the guard's display: text, or one JSON
// object per line); logs go to standard error. It stops on SIGINT or
// SIGTERM, or when a video file it was given ends. configs/ has an example
// configuration and the systemd unit.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("checkpointd", flag.ContinueOnError)
	fl.SetOutput(stderr)
	path := fl.String("config", "/etc/checkpoint/checkpoint.toml", "configuration file")
	asJSON := fl.Bool("json", false, "show decisions as JSON lines")
	level := fl.String("log-level", "info", "debug, info, warn or error")
	once := fl.Bool("sync-once", false, "sync with the authority once, report, and exit (no camera)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "checkpointd: --log-level: %v\n", err)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "checkpointd: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	d := daemon.New(cfg, daemon.Options{Clock: clock.System{}, Log: log, Display: stdout, JSON: *asJSON})
	if *once {
		if err := d.SyncOnce(ctx, stdout); err != nil {
			log.Error("sync failed", "component", "daemon", "err", err)
			return 1
		}
		return 0
	}
	if err := d.Run(ctx); err != nil {
		log.Error("checkpoint failed", "component", "daemon", "err", err)
		return 1
	}
	return 0
}
