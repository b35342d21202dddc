// Command screenshots photographs the guard's screen while checkpointd
// decides: headless Chromium shows the guard's page and, in a second tab,
// a lane's passenger page, both at 1280x800. After each passage the lane
// draws, the guard's view is saved as NN-OUTCOME.png (01-pass.png,
// 02-refer.png, ...); the passenger's view is saved once on a pass and
// once on a refusal (passenger-pass.png, passenger-refuse.png). make demo
// runs it while its offline run plays.
//
//	screenshots -url http://127.0.0.1:8431 -lane lane-1 -out DIR [-n N] [-ready FILE]
//
// It starts the browser, writes -ready (so that checkpointd can be started
// then), waits for the page's server, and stops after N passages, on
// SIGINT or SIGTERM, or once the server has gone away.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/checkpointd/checkpoint/internal/browser"
)

// The screen's size: the kiosk display the screen is made for.
const width, height = 1280, 800

func main() {
	base := flag.String("url", "", "the screen, http://HOST:PORT")
	lane := flag.String("lane", "", "the lane to watch")
	out := flag.String("out", "screen", "folder for the pictures")
	n := flag.Int("n", 0, "stop after this many passages (0: when the server goes away)")
	ready := flag.String("ready", "", "file to create once the browser runs")
	flag.Parse()
	if *base == "" || *lane == "" {
		fmt.Fprintln(os.Stderr, "usage: screenshots -url http://HOST:PORT -lane NAME [-out DIR] [-n N] [-ready FILE]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *base, *lane, *out, *n, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "screenshots:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, base, lane, out string, n int, ready string) error {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-url %q: not http://HOST:PORT", base)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	guard, stopBrowser, err := browser.New(ctx, width, height)
	if err != nil {
		return fmt.Errorf("starting chromium: %w", err)
	}
	defer stopBrowser()
	passenger, closeTab := chromedp.NewContext(guard) // a second tab
	defer closeTab()
	for _, tab := range []context.Context{guard, passenger} {
		if err := chromedp.Do(tab, chromedp.EmulateViewport(width, height)); err != nil {
			return fmt.Errorf("viewport: %w", err)
		}
	}
	if ready != "" {
		if err := os.WriteFile(ready, nil, 0o644); err != nil {
			return err
		}
	}
	if err := waitServer(ctx, u.Host, 2*time.Minute); err != nil {
		return err
	}
	if err := chromedp.Do(guard, chromedp.Navigate(base+"/")); err != nil {
		return fmt.Errorf("guard's page: %w", err)
	}
	if err := chromedp.Do(passenger, chromedp.Navigate(base+"/lane/"+url.PathEscape(lane))); err != nil {
		return fmt.Errorf("passenger's page: %w", err)
	}
	laneID := strconv.Quote("lane-" + lane)
	if _, err := chromedp.Run(guard, chromedp.Poll[bool](`!document.getElementById("conn").classList.contains("down") && !!document.getElementById(`+laneID+`)`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		return fmt.Errorf("the guard's page shows no lane %s: %w", lane, err)
	}
	// Passages decided before the page connected are history: counted,
	// not photographed.
	prev, err := chromedp.Run(guard, chromedp.Evaluate[string](`document.getElementById(`+laneID+`).dataset.lastDecided || ""`))
	if err != nil {
		return err
	}
	count := 0
	if prev != "" {
		last, err := decided(base, lane)
		if err != nil {
			return err
		}
		if at := slices.IndexFunc(last, func(p passage) bool { return p.ID == prev }); at >= 0 {
			count = len(last) - at
		}
	}
	fmt.Printf("watching lane %s on %s\n", lane, base)

	shown := map[string]bool{} // passenger views taken, by outcome
	for n == 0 || count < n {
		next, err := chromedp.Run(guard, chromedp.Poll[string](
			`(() => { const v = document.getElementById(`+laneID+`).dataset.lastDecided; return v && v !== `+strconv.Quote(prev)+` ? v : null })()`,
			chromedp.WithPollingTimeout(time.Second)))
		switch {
		case ctx.Err() != nil:
			return finish(out, count)
		case errors.Is(err, chromedp.ErrPollingTimeout):
			if !alive(u.Host) {
				return finish(out, count)
			}
			continue
		case err != nil:
			return err
		}
		png, err := chromedp.Run(guard, chromedp.CaptureScreenshot())
		if err != nil {
			return fmt.Errorf("screenshot: %w", err)
		}
		last, err := decided(base, lane)
		if err != nil {
			return err
		}
		// Passages decided since the last picture (two may come at once).
		at := slices.IndexFunc(last, func(p passage) bool { return p.ID == next })
		if at < 0 {
			return fmt.Errorf("passage %s is not on the screen's state", next)
		}
		before := slices.IndexFunc(last, func(p passage) bool { return p.ID == prev })
		if before < 0 {
			before = len(last)
			if prev != "" {
				before = at + 1
			}
		}
		count += before - at
		prev = next
		outcome := last[at].Outcome
		name := filepath.Join(out, fmt.Sprintf("%02d-%s.png", count, outcome))
		if err := os.WriteFile(name, png, 0o644); err != nil {
			return err
		}
		fmt.Println(name)
		if (outcome == "pass" || outcome == "refuse") && !shown[outcome] {
			if err := shootPassenger(passenger, next, filepath.Join(out, "passenger-"+outcome+".png")); err != nil {
				fmt.Fprintln(os.Stderr, "screenshots: passenger's view:", err)
				continue
			}
			shown[outcome] = true
		}
	}
	return finish(out, count)
}

// shootPassenger saves the passenger's view once it shows the passage.
func shootPassenger(tab context.Context, id, name string) error {
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](`document.getElementById("screen").dataset.passage === `+strconv.Quote(id),
		chromedp.WithPollingTimeout(3*time.Second))); err != nil {
		return fmt.Errorf("passage %s not shown: %w", id, err)
	}
	png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, png, 0o644); err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

func finish(out string, count int) error {
	fmt.Printf("%d passages photographed in %s\n", count, out)
	return nil
}

// client reads the screen's state; the screen is on this machine.
var client = &http.Client{Timeout: 5 * time.Second}

// passage is what the pictures' names need of a decided passage.
type passage struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
}

// decided returns a lane's last decided passages, newest first.
func decided(base, lane string) ([]passage, error) {
	res, err := client.Get(base + "/api/state")
	if err != nil {
		return nil, fmt.Errorf("screen state: %w", err)
	}
	defer res.Body.Close()
	var st struct {
		Lanes []struct {
			Lane string    `json:"lane"`
			Last []passage `json:"last"`
		} `json:"lanes"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("screen state: %w", err)
	}
	for _, l := range st.Lanes {
		if l.Lane == lane {
			return l.Last, nil
		}
	}
	return nil, fmt.Errorf("screen state: no lane %s", lane)
}

// waitServer waits until something listens on addr.
func waitServer(ctx context.Context, addr string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !alive(addr) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing serves %s: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func alive(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
