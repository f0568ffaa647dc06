//go:build linux

// Command varta-load stands in for many VLP agents from one process, or
// receives as the bare receiver. As root it spawns N sleeping children and
// sends VLP v0.2 frames on behalf of each, attaching SCM_CREDENTIALS with
// the child's pid, so the observer sees N kernel-attested agents.
//
//	varta-load --socket S --agents 4096 --rate-hz 1 --duration 30s
//	varta-load --socket S --agents 4096 --flood --beats 1000000
//	varta-load --socket S --agents 4096 --rate-hz 1 --duration 25s --silence-every 4 --silence-at 20s
//	varta-load --receive --socket S [--duration 10s]
//
// It prints a one-line JSON summary on stdout (--format tsv for TSV). On
// SIGINT or SIGTERM it stops, kills and reaps every child, and still
// prints the summary.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"varta-watch/internal/loadgen"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		socket       = flag.String("socket", "", "the observer's socket (receive mode: where to bind)")
		agents       = flag.Int("agents", 100, "agents (sleeping child processes) to send for")
		rateHz       = flag.Float64("rate-hz", 1, "beats per second per agent, spread evenly")
		duration     = flag.Duration("duration", 10*time.Second, "how long to run (0: flood until --beats, receive until a signal)")
		flood        = flag.Bool("flood", false, "send as fast as possible, round-robin over the agents")
		beats        = flag.Int64("beats", 0, "flood: stop after this many frames were queued")
		silenceEvery = flag.Int("silence-every", 0, "agents 0, K, 2K, … go silent at --silence-at (0: none)")
		silenceAt    = flag.Duration("silence-at", 0, "when the silenced agents stop, from the start")
		receive      = flag.Bool("receive", false, "be the bare receiver: bind --socket and count frames")
		also         = flag.String("also", "", "a second receiver's socket that gets every paced beat too, back to back (its sends are counted apart)")
		format       = flag.String("format", "json", "summary format: json or tsv")
	)
	flag.Parse()
	if *socket == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "varta-load: --socket is required (and takes no other arguments)")
		flag.Usage()
		return 2
	}
	stop := make(chan struct{})
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	stopOnce := sync.OnceFunc(func() { close(stop) })
	go func() { <-sigc; stopOnce() }()

	if *receive {
		return runReceiver(*socket, *duration, stop, stopOnce, *format)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "varta-load: must run as root: only CAP_SYS_ADMIN may attach another pid's SCM_CREDENTIALS")
		return 1
	}
	kids, err := loadgen.SpawnChildren(*agents)
	if err != nil {
		fmt.Fprintln(os.Stderr, "varta-load:", err)
		return 1
	}
	defer kids.Close()
	cfg := loadgen.Config{
		Socket: *socket, Pids: kids.Pids, RateHz: *rateHz, Flood: *flood, Beats: *beats,
		Duration: *duration, SilenceEvery: *silenceEvery, SilenceAt: *silenceAt, Stop: stop,
		Also: *also,
	}
	res, err := loadgen.Run(cfg)
	kids.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "varta-load:", err)
		return 1
	}
	if *format == "tsv" {
		if a := res.Also; a != nil {
			fmt.Printf("mode\tagents\trate_hz\tsent\tlost\tduration_s\talso_sent\talso_lost\tlost_both\n%s\t%d\t%g\t%d\t%d\t%.3f\t%d\t%d\t%d\n",
				res.Mode, res.Agents, res.RateHz, res.Sent, res.Lost, res.DurationSec, a.Sent, a.Lost, res.LostBoth)
			return 0
		}
		fmt.Printf("mode\tagents\trate_hz\tsent\tlost\tduration_s\n%s\t%d\t%g\t%d\t%d\t%.3f\n",
			res.Mode, res.Agents, res.RateHz, res.Sent, res.Lost, res.DurationSec)
		return 0
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

func runReceiver(socket string, d time.Duration, stop <-chan struct{}, stopNow func(), format string) int {
	r, err := loadgen.Listen(socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "varta-load:", err)
		return 1
	}
	defer r.Close()
	if d > 0 {
		t := time.AfterFunc(d, stopNow)
		defer t.Stop()
	}
	res, err := r.Run(stop)
	if err != nil {
		fmt.Fprintln(os.Stderr, "varta-load:", err)
		return 1
	}
	if format == "tsv" {
		fmt.Printf("frames\tother\tframes_per_s\n%d\t%d\t%.0f\n", res.Frames, res.Other, res.Rate)
		return 0
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}
