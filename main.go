// Command varta-watch is the observer of the Varta Lifeline Protocol: it
// receives VLP v0.2 heartbeat frames on a Unix datagram socket, tracks every
// agent pid and surfaces a stall when one goes silent.
package main

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// logFlushTimeout bounds how long the exit waits for log lines that a
// stderr nobody reads has not taken.
const logFlushTimeout = time.Second

func main() {
	socketHelper() // returns unless this process is the socket helper
	guardSignals()
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// quitSeen records that a SIGQUIT came, for a stop asked for before the
// observer routes its signals (startSignals).
var quitSeen atomic.Bool

// guardSignals keeps SIGPIPE and SIGQUIT from their default actions for
// the whole life of the process, before the observer routes its signals
// and after that routing ends at shutdown. Go kills a program with SIGPIPE
// when a write to fd 1 or 2 hits a broken pipe (`varta-watch … | head`)
// unless SIGPIPE is notified; notified, the write fails with EPIPE, which
// the logger counts. SIGQUIT would print every goroutine's stack and exit
// 2; for the observer it is a clean stop like SIGTERM (contract §8), which
// startSignals makes of it. Notify rather than signal.Ignore: an ignored
// signal stays ignored across exec, and recovery children must start with
// the default SIGPIPE (a shell cannot even restore it).
//
// A Go runtime fatal error (out of memory, a corrupted heap) still prints
// a trace: GOTRACEBACK can only be lowered from the environment
// (debug.SetTraceback never goes below it). Panics are reported in one
// line by realMain.
func guardSignals() {
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGPIPE, syscall.SIGQUIT)
	go func() {
		for s := range c {
			if s == syscall.SIGQUIT {
				quitSeen.Store(true)
			}
		}
	}()
}

// realMain runs the observer and returns the exit status: 0 clean, 1 a
// failure at start or while running, 2 a bad command line.
func realMain(args []string, stdout, stderr io.Writer) (status int) {
	cfg, err := loadConfig(args)
	if err != nil {
		line := sprintf("varta-watch: %v\n", err)
		if cfg.logJSON {
			// --log-format json came before the mistake: a log shipper
			// parsing stderr gets the line that names it as JSON too.
			line = jsonLine(levelError, "bad command line", fStr("err", err.Error()))
		}
		var fe *flagError
		if errors.As(err, &fe) {
			line += "\n" + usageText // the usage stays text: it is for a person
		}
		var bad *fileError
		if errors.As(err, &bad) && !cfg.logJSON {
			// Contract §9: a bad file at start is one line PATH:LINE: problem.
			line = err.Error() + "\n"
		}
		io.WriteString(stderr, line)
		return 2
	}
	if cfg.showHelp {
		io.WriteString(stdout, usageText)
		return 0
	}
	if cfg.showVersion {
		io.WriteString(stdout, versionLine()+"\n")
		return 0
	}
	log := newLogger(cfg.logJSON, os.Stderr)
	// Deferred first, so it runs last: after the panic report below.
	defer log.flush(logFlushTimeout)
	var o *observer
	defer func() {
		// No stack trace ever reaches a user: report the fault in one line,
		// still flush the event file and remove the socket, and exit 1.
		if r := recover(); r != nil {
			log.error("internal error", fStr("panic", sprintf("%v", r)))
			if o != nil {
				o.closeAll()
			}
			status = 1
		}
	}()
	// fail reports what ends the observer: one line, JSON with
	// --log-format json (through the logger, after the lines it holds).
	fail := func(msg string, err error) int {
		if cfg.logJSON {
			log.error(msg, fStr("err", err.Error()))
		} else {
			io.WriteString(stderr, sprintf("varta-watch: %v\n", err))
		}
		return 1
	}
	o, err = newObserver(cfg, log)
	if err != nil {
		return fail("start failed", err)
	}
	o.args, o.stdout = args, stdout
	if o.prom != nil {
		printAddr(stdout, o.prom.addr(), log)
	}
	if err := o.run(); err != nil {
		return fail("stopped by an error", err)
	}
	return 0
}

// addrLineGiveUp is how long the address line waits for a stdout that
// takes nothing (a full pipe nobody reads) before it is counted as lost.
const addrLineGiveUp = 10 * time.Second

// printAddr writes the bound metrics address as a line on stdout. A stdout
// nobody reads any more does not stop the observer (guardSignals): the
// line is counted as lost and it serves on. On a file it never blocks in
// write(2) (writePolled): after a reload it is written by a goroutine
// beside the loop, which a write blocked on a full pipe would hold up; a
// full pipe nobody reads gets addrLineGiveUp, then the line is lost.
func printAddr(stdout io.Writer, addr string, log *logger) {
	line := addr + "\n"
	f, ok := stdout.(*os.File)
	if !ok {
		if _, err := io.WriteString(stdout, line); err != nil {
			log.lostLine()
		}
		return
	}
	var pfd [1]unix.PollFd
	if _, err := writePolled(int(f.Fd()), &pfd, []byte(line), addrLineGiveUp); err != nil {
		log.lostLine()
		return
	}
	f.Sync()
}
