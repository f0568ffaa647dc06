// Command varta-watch is the observer of the Varta Lifeline Protocol: it
// receives VLP v0.2 heartbeat frames on a Unix datagram socket, tracks every
// agent pid and surfaces a stall when one goes silent.
package main

import (
	"errors"
	"io"
	"os"
	"time"
)

// logFlushTimeout bounds how long the exit waits for log lines that a
// stderr nobody reads has not taken.
const logFlushTimeout = time.Second

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the observer and returns the exit status: 0 clean, 1 a
// failure at start or while running, 2 a bad command line.
func realMain(args []string, stdout, stderr io.Writer) (status int) {
	cfg, err := parseArgs(args)
	if err != nil {
		var fe *flagError
		if errors.As(err, &fe) {
			io.WriteString(stderr, sprintf("varta-watch: %v\n\n%s", err, usageText))
			return 2
		}
		io.WriteString(stderr, sprintf("varta-watch: %v\n", err))
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
	o, err = newObserver(cfg, log)
	if err != nil {
		io.WriteString(stderr, sprintf("varta-watch: %v\n", err))
		return 1
	}
	if o.prom != nil {
		io.WriteString(stdout, o.prom.addr()+"\n")
		if f, ok := stdout.(*os.File); ok {
			f.Sync()
		}
	}
	if err := o.run(); err != nil {
		io.WriteString(stderr, sprintf("varta-watch: %v\n", err))
		return 1
	}
	return 0
}
