package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// eventFile appends TSV event lines (contract §5) through a buffer that the
// loop flushes at least every flushInterval and at shutdown.
type eventFile struct {
	path       string
	fd         int
	buf        []byte
	dirtySince int64 // monotonic ns of the oldest unflushed line, 0 when clean
	failing    bool  // inside a write-error episode (logged once)
	o          *observer
}

const (
	eventFlushInterval = 100_000_000 // ns: contract §5, "at least every 100 ms"
	eventBufSoftLimit  = 32 << 10    // flush early past this many buffered bytes
	eventWriteChunk    = 64 << 10    // most bytes one write(2) of the loop may take
)

func openEventFile(o *observer, path string) (*eventFile, error) {
	f := &eventFile{path: path, fd: -1, buf: make([]byte, 0, 256<<10), o: o}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *eventFile) open() error {
	// O_NONBLOCK: a FIFO planted at the path (with no reader) would block
	// open(2), at start or in the loop on SIGHUP, for ever; with it the
	// open fails (ENXIO) instead. Regular files ignore the flag.
	fd, err := unix.Open(f.path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o640)
	if err != nil {
		// O_NOFOLLOW fails with ELOOP when the path is a symlink: whoever
		// planted it could aim the observer's writes at any file.
		var st unix.Stat_t
		if err == unix.ELOOP && unix.Lstat(f.path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("export file %s: is a symbolic link; refusing to write through it", f.path)
		}
		return fmt.Errorf("export file %s: %v", f.path, err)
	}
	f.fd = fd
	return nil
}

// add buffers one event line.
func (f *eventFile) add(e *event, now int64) {
	if f.dirtySince == 0 {
		f.dirtySince = now
	}
	f.buf = appendEvent(f.buf, e)
}

// due reports whether the buffer should be written now.
func (f *eventFile) due(now int64) bool {
	return f.dirtySince != 0 && (len(f.buf) >= eventBufSoftLimit || now-f.dirtySince >= eventFlushInterval)
}

// nextDeadline returns when the buffer must be flushed, 0 when clean.
func (f *eventFile) nextDeadline() int64 {
	if f.dirtySince == 0 {
		return 0
	}
	return f.dirtySince + eventFlushInterval
}

// flushStep writes at most eventWriteChunk bytes so that the loop can
// drain the socket between steps. It returns true when the buffer is empty.
func (f *eventFile) flushStep(now int64) bool {
	if len(f.buf) == 0 {
		f.dirtySince = 0
		return true
	}
	n := min(len(f.buf), eventWriteChunk)
	// Write whole lines only, so that a failed or partial write never leaves
	// half a line in the file for the next one to be glued to.
	if n < len(f.buf) {
		for n > 0 && f.buf[n-1] != '\n' {
			n--
		}
		if n == 0 {
			n = min(len(f.buf), eventWriteChunk)
		}
	}
	w, err := unix.Write(f.fd, f.buf[:n])
	if err == unix.EINTR {
		return false
	}
	if err != nil {
		f.o.stats.exportWriteErrors++
		if !f.failing {
			f.failing = true
			f.o.log.error("event file write failed; events are kept in memory and retried", fStr("path", f.path), fStr("err", err.Error()))
		}
		// Retry at the next flush interval rather than spinning.
		f.dirtySince = now
		return true
	}
	if f.failing {
		f.failing = false
		f.o.log.info("event file writable again", fStr("path", f.path))
	}
	rest := copy(f.buf, f.buf[w:])
	f.buf = f.buf[:rest]
	if rest == 0 {
		f.dirtySince = 0
		return true
	}
	return false
}

// flushAll writes everything, for shutdown and reopen.
func (f *eventFile) flushAll() {
	for i := 0; len(f.buf) > 0 && i < 1<<16; i++ {
		before := len(f.buf)
		f.flushStep(monoNow())
		if len(f.buf) == before {
			return // failing: nothing more can be done now
		}
	}
}

// reopen flushes, then closes and reopens the path (SIGHUP, for logrotate).
func (f *eventFile) reopen() error {
	f.flushAll()
	old := f.fd
	if err := f.open(); err != nil {
		f.fd = old
		return err
	}
	unix.Close(old)
	return nil
}

func (f *eventFile) close() {
	f.flushAll()
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}
