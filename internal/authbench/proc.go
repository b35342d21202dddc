package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/trust"
)

// keys are the authority's keys and trust list, made once with the
// authority's own commands (as scripts/demo.sh makes them).
type keys struct {
	dir      string
	trust    string // the signed trust list's file
	listKeys []ed25519.PublicKey
}

func makeKeys(ctx context.Context, bin, tmp string) (keys, error) {
	k := keys{dir: filepath.Join(tmp, "keys"), trust: filepath.Join(tmp, "trust.cbor")}
	for _, args := range [][]string{
		{"keygen", "--out", k.dir},
		{"trust", "--root", filepath.Join(k.dir, "root.key"), "--issuer", filepath.Join(k.dir, "issuer.pub"), "--region", "44",
			"--issuer-code", "GD", "--out", k.trust},
	} {
		if b, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			return k, fmt.Errorf("authority %s: %w: %s", args[0], err, b)
		}
	}
	root, err := keyfile.ReadPublic(filepath.Join(k.dir, "root.pub"))
	if err != nil {
		return k, fmt.Errorf("root key: %w", err)
	}
	raw, err := os.ReadFile(k.trust)
	if err != nil {
		return k, fmt.Errorf("trust list: %w", err)
	}
	l, err := trust.Parse(raw, root)
	if err != nil {
		return k, fmt.Errorf("trust list: %w", err)
	}
	for _, lk := range l.ListKeys {
		k.listKeys = append(k.listKeys, lk.PublicKey)
	}
	if len(k.listKeys) == 0 {
		return k, errors.New("the trust list names no list key")
	}
	return k, nil
}

// authorityProc is a running `authority serve`.
type authorityProc struct {
	cmd  *exec.Cmd
	url  string
	log  string
	done chan struct{}
	err  error // the process's exit, once done is closed
}

// errUnavailable is an authority that would not serve: its reason is the
// error's text.
var errUnavailable = errors.New("not available")

// startAuthority runs `authority serve` on db, listening on a free loopback
// port, and waits until it serves. An authority that exits first is
// errUnavailable, with the last line it logged.
func startAuthority(ctx context.Context, bin string, k keys, db, logPath string) (*authorityProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("authority log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", "--keys", k.dir, "--db", db, "--trust", k.trust, "--region", "44",
		"--issuer-code", "GD", "--listen", "127.0.0.1:0")
	cmd.Stderr = logf
	// The authority ends with this program, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	p := &authorityProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "authority serving on "); ok {
				select {
				case urls <- u:
				default:
				}
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.url = <-urls:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%w: %s", errUnavailable, lastLine(logPath))
	case <-time.After(2 * time.Minute):
		p.stop()
		return nil, fmt.Errorf("%w: the authority did not start serving within 2 minutes: %s", errUnavailable, lastLine(logPath))
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// lastLine is the last line of the authority's log, without the command's
// prefix.
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	l = strings.TrimPrefix(l, "authority serve: ")
	if l == "" {
		return "it exited without a word"
	}
	return l
}

// stop ends the authority as an operator would (SIGTERM: it lets the
// requests in progress finish), and kills it if it has not exited within
// 15 s.
func (p *authorityProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// pid is the authority's process id.
func (p *authorityProc) pid() int { return p.cmd.Process.Pid }

// logged counts the lines of the authority's log at level ERROR and
// returns the first few.
func (p *authorityProc) logged() (int, []string) {
	b, _ := os.ReadFile(p.log)
	n := 0
	var first []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=ERROR") {
			n++
			if len(first) < 3 {
				first = append(first, l)
			}
		}
	}
	return n, first
}

// memKB reads a field of /proc/PID/status, in kB: VmHWM is the peak
// resident memory, VmRSS the current.
func memKB(pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// memSampler samples a process's anonymous resident memory (RssAnon: its
// heap and stacks, not the file pages it maps, such as bbolt's database
// file, which VmHWM counts too) every 250 ms, keeping the highest.
type memSampler struct {
	stop chan struct{}
	done chan struct{}
	peak uint64 // kB, read after done
}

func sampleMemory(pid int) *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			m.peak = max(m.peak, memKB(pid, "RssAnon"))
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// end stops the sampling and returns the highest sample, in kB.
func (m *memSampler) end() uint64 {
	select {
	case <-m.done:
	default:
		close(m.stop)
		<-m.done
	}
	return m.peak
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procStat reads /proc/PID/stat: the parent, and the CPU the process
// used (user and system) and the CPU of its children it waited for.
func procStat(pid int) (ppid int, cpu, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command's name, in parentheses, may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	num := func(s string) time.Duration { n, _ := strconv.ParseInt(s, 10, 64); return time.Duration(n) * clockTick }
	ppid, _ = strconv.Atoi(f[1])
	return ppid, num(f[11]) + num(f[12]), num(f[13]) + num(f[14]), nil
}

// processCPU is the CPU a process has used.
func processCPU(pid int) time.Duration {
	_, cpu, _, _ := procStat(pid)
	return cpu
}

// treeCPU is the CPU a server and its children (PostgreSQL's postmaster
// and its backends) have used: the running children's, and those that
// exited.
func treeCPU(pid int) time.Duration {
	_, cpu, exited, err := procStat(pid)
	if err != nil {
		return 0
	}
	total := cpu + exited
	for _, c := range children(pid) {
		_, ccpu, _, _ := procStat(c)
		total += ccpu
	}
	return total
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, err := procStat(c); err == nil && ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// selfCPU is the CPU this program has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the machine's CPU time from /proc/stat, summed over its
// CPUs: busy (user, system, interrupts), idle, iowait (idle with disk
// writes outstanding), and steal (taken by the hypervisor).
type machineCPU struct{ busy, idle, iowait, steal time.Duration }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var m machineCPU
	for i, s := range f[1:] {
		n, _ := strconv.ParseInt(s, 10, 64)
		d := time.Duration(n) * clockTick
		switch i {
		case 3:
			m.idle += d
		case 4:
			m.iowait += d
		case 7:
			m.steal += d
		case 8, 9: // guest time is counted in user time already
		default:
			m.busy += d
		}
	}
	return m
}

func (m machineCPU) sub(o machineCPU) machineCPU {
	return machineCPU{m.busy - o.busy, m.idle - o.idle, m.iowait - o.iowait, m.steal - o.steal}
}

// perfRun is perf recording some processes.
type perfRun struct {
	cmd  *exec.Cmd
	file string
}

// startPerf starts perf recording the processes pids with call graphs;
// nil if perf is not there or will not start.
func startPerf(pids []int, file string) *perfRun {
	path, err := exec.LookPath("perf")
	if err != nil || len(pids) == 0 {
		return nil
	}
	list := make([]string, len(pids))
	for i, p := range pids {
		list[i] = strconv.Itoa(p)
	}
	cmd := exec.Command(path, "record", "-q", "-F", "199", "-g", "-p", strings.Join(list, ","), "-o", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cmd.Start() != nil {
		return nil
	}
	return &perfRun{cmd: cmd, file: file}
}

// stop ends the recording and returns the symbols that took at least
// 1.5% of the samples, self time, most first.
func (p *perfRun) stop() []string {
	if p == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	out, err := exec.Command("perf", "report", "-i", p.file, "--stdio", "--no-children", "--sort", "comm,dso,symbol",
		"-g", "none", "--percent-limit", "1.5").Output()
	if err != nil {
		return nil
	}
	var top []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		top = append(top, strings.TrimSuffix(strings.Join(strings.Fields(l), " "), " - -"))
		if len(top) == 15 {
			break
		}
	}
	return top
}
