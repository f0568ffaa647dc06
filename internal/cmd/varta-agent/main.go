//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris

// Command varta-agent is a VLP v0.2 agent for tests and `make demo`: it
// beats to an observer socket like a watched process would, and can
// misbehave on request (spoofed pid, duplicate nonces, a hang, raw bytes).
//
//	varta-agent --socket PATH [--interval-ms 100] [--count N] [--start-nonce 1]
//	            [--nonce-step 1] [--status ok|degraded|critical] [--payload N]
//	            [--pid N] [--repeat 1] [--terminal] [--hang-after N] [--report]
//	varta-agent --socket PATH --hex HEX [--hex HEX]...
//
// It prints nothing while it works (with --report, one line when the beats
// end); an error is one line on stderr and exit status 1.
package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"varta-watch/internal/vlpclient"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	socket     string
	interval   time.Duration
	count      uint64 // 0: until SIGTERM/SIGINT
	startNonce uint64
	nonceStep  uint64
	status     uint8
	payload    uint32
	pid        uint32
	repeat     uint
	terminal   bool
	hang       bool
	hangAfter  uint64
	hex        [][]byte
	report     bool
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, fs, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	if err == nil {
		err = agent(cfg, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "varta-agent: %v\n", err)
		return 1
	}
	return 0
}

// maxIntervalMS keeps the interval within a time.Duration (a day is plenty).
const maxIntervalMS = 24 * 60 * 60 * 1000

func parseArgs(args []string) (config, *flag.FlagSet, error) {
	var cfg config
	fs := flag.NewFlagSet("varta-agent", flag.ContinueOnError)
	// flag prints its own message and the usage on errors; we print one line.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: varta-agent --socket PATH [flags]\n\nSends VLP v0.2 heartbeats to an observer socket.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.socket, "socket", "", "observer socket `PATH` (required)")
	intervalMS := fs.Int("interval-ms", 100, "milliseconds between beats (0: as fast as possible)")
	fs.Uint64Var(&cfg.count, "count", 0, "send `N` beats, then exit 0; 0 beats until SIGTERM or SIGINT")
	fs.Uint64Var(&cfg.startNonce, "start-nonce", 1, "nonce of the first beat")
	fs.Uint64Var(&cfg.nonceStep, "nonce-step", 1, "nonce increment per beat; nonces wrap from 2^64-2 to 0")
	fs.Func("status", "beat `STATUS`: ok, degraded or critical (default ok)", func(s string) error {
		switch s {
		case "ok":
			cfg.status = vlpclient.StatusOK
		case "degraded":
			cfg.status = vlpclient.StatusDegraded
		case "critical":
			cfg.status = vlpclient.StatusCritical
		default:
			return errors.New("want ok, degraded or critical")
		}
		return nil
	})
	fs.Var(uint32Value{&cfg.payload}, "payload", "payload `N` (u32) carried by every frame")
	var pidFlag uint32
	fs.Var(uint32Value{&pidFlag}, "pid", "pid `N` written into the frames (default: the agent's own; another value is a spoof)")
	fs.UintVar(&cfg.repeat, "repeat", 1, "send each beat's frame `N` times (duplicate nonces)")
	fs.BoolVar(&cfg.terminal, "terminal", false, "when the beats end (--count reached, SIGTERM or SIGINT; not after --hang-after), send the terminal frame: critical, nonce 2^64-1")
	fs.Func("hang-after", "after `N` beats stop beating but stay alive until signalled", func(s string) error {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			return errors.New("not an unsigned number")
		}
		cfg.hang, cfg.hangAfter = true, n
		return nil
	})
	fs.BoolVar(&cfg.report, "report", false, "when the beats end (not after --hang-after), print \"sent N dropped M\": frames the kernel queued for the observer, and frames dropped because its queue was full")
	fs.Func("hex", "send these raw bytes (`HEX`, 0 to 65535 bytes) as one datagram and exit; repeatable, sent in order", func(s string) error {
		b, err := hex.DecodeString(s)
		if err != nil {
			return errors.New("not hex")
		}
		if len(b) > 65535 {
			return fmt.Errorf("%d bytes, at most 65535", len(b))
		}
		cfg.hex = append(cfg.hex, b)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return cfg, fs, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.socket == "":
		return cfg, fs, errors.New("--socket is required")
	case *intervalMS < 0 || *intervalMS > maxIntervalMS:
		return cfg, fs, fmt.Errorf("--interval-ms %d: want 0 to %d", *intervalMS, maxIntervalMS)
	case cfg.repeat == 0:
		return cfg, fs, errors.New("--repeat 0: must be at least 1")
	}
	cfg.interval = time.Duration(*intervalMS) * time.Millisecond
	cfg.pid = uint32(os.Getpid())
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "pid" {
			cfg.pid = pidFlag
		}
	})
	return cfg, fs, nil
}

// uint32Value is a flag for a u32; like flag's own integers it takes
// decimal, 0x hex, 0o octal and 0b binary.
type uint32Value struct{ p *uint32 }

func (v uint32Value) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*v.p), 10)
}

func (v uint32Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return errors.New("not an unsigned 32-bit number")
	}
	*v.p = uint32(n)
	return nil
}

func agent(cfg config, stdout io.Writer) error {
	c, err := vlpclient.Dial(cfg.socket)
	if err != nil {
		return err
	}
	defer c.Close()

	if len(cfg.hex) > 0 {
		for _, b := range cfg.hex {
			if err := sendReliably(c, b); err != nil {
				return err
			}
		}
		return nil
	}

	// Registered before the first beat: whoever saw a beat may signal.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	var tick <-chan time.Time
	if cfg.interval > 0 {
		t := time.NewTicker(cfg.interval)
		defer t.Stop()
		tick = t.C
	}
	var frame [vlpclient.FrameSize]byte
	var sent, dropped uint64
	nonce := cfg.startNonce
beating:
	for beats := uint64(0); ; beats++ {
		if cfg.hang && beats == cfg.hangAfter {
			<-sigs // hung: alive, silent, until told to go
			return nil
		}
		if cfg.count != 0 && beats == cfg.count {
			break
		}
		if beats > 0 && !waitTick(sigs, tick) {
			break beating
		}
		vlpclient.Encode(&frame, cfg.status, cfg.pid, monotonicNanos(), nonce, cfg.payload)
		for r := range cfg.repeat {
			if r > 0 && !waitTick(sigs, nil) {
				break beating // stopped in the middle of a long --repeat
			}
			// A full queue drops the beat, as agents do. So does a
			// missing or dead observer: it may not have started yet or
			// be restarting, and an agent keeps beating through that.
			ok, err := c.Send(frame[:])
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ECONNREFUSED) {
				return err
			}
			if ok {
				sent++
			} else {
				dropped++
			}
		}
		nonce = vlpclient.NextNonce(nonce, cfg.nonceStep)
	}
	if cfg.report {
		fmt.Fprintf(stdout, "sent %d dropped %d\n", sent, dropped)
	}
	if cfg.terminal {
		vlpclient.Encode(&frame, vlpclient.StatusCritical, cfg.pid, monotonicNanos(), vlpclient.NonceTerminal, cfg.payload)
		return sendReliably(c, frame[:])
	}
	return nil
}

// waitTick waits for the next beat: the next tick, or nothing when tick is
// nil (interval 0). It returns false if SIGINT or SIGTERM came first.
func waitTick(sigs <-chan os.Signal, tick <-chan time.Time) bool {
	if tick == nil {
		select {
		case <-sigs:
			return false
		default:
			return true
		}
	}
	select {
	case <-sigs:
		return false
	case <-tick:
		return true
	}
}

// sendReliably sends a datagram that the caller asked for explicitly (raw
// bytes, the terminal frame): unlike a beat it is retried while the
// observer's queue is full, for up to 5 seconds.
func sendReliably(c *vlpclient.Client, b []byte) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		sent, err := c.Send(b)
		if err != nil || sent {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("observer queue stayed full for 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func monotonicNanos() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(clockMonotonic, &ts); err != nil {
		panic(err) // cannot fail for CLOCK_MONOTONIC with a valid pointer
	}
	return uint64(ts.Nano())
}
