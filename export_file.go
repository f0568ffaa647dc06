package main

import (
	"bytes"
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// eventFile appends TSV event lines (contract §5) through a buffer that the
// loop flushes at least every eventFlushInterval and at shutdown.
//
// Only whole lines reach the file: a write is cut at a line end, and a
// short write that ends inside a line (a full disk) is truncated back to
// the last whole line and the rest kept for later. Rotation happens between
// lines, so every line lands whole in exactly one generation.
//
// While the file cannot be written (disk full, I/O error) lines are kept in
// memory up to eventBufMax; past that new lines are dropped and counted
// (varta_export_dropped_events_total), and once the buffer has room again
// an io line records how many were lost at that point of the file. The
// oldest lines are kept rather than the newest so that the file has one
// marked gap instead of a hole before lines already waiting.
type eventFile struct {
	path     string
	cpath    []byte // path NUL-terminated, for the allocation-free identity check
	fd       int
	dev, ino uint64 // identity of the open file
	size     int64  // bytes in the current generation
	regular  bool   // rotation applies only to a regular file (not /dev/full, a FIFO …)
	maxBytes int64  // rotate past this many bytes; 0 never
	keep     int    // rotated generations kept
	gens     []string
	newPath  string // PATH.new: the next live file, made before anything is renamed
	oldPath  string // PATH.expired: the oldest generation while a rotation can still be undone

	buf           []byte
	dirtySince    int64 // monotonic ns of the oldest unflushed line, 0 when clean
	failing       bool  // inside a write-error episode (logged once)
	rotateFailing bool  // inside a rotation-error episode (logged once)
	failedOps     int64 // failed writes in this episode
	retryAt       int64 // while failing: next write attempt
	rotateAt      int64 // after a failed rotation: next attempt
	dropped       uint64

	// The path must be opened again: a SIGHUP reopen failed, or the open
	// file left the path (see checkPath). Retried every eventRetryInterval.
	reopenPending bool
	detached      bool  // the open file takes no more lines (it was removed, or moved away while rotating)
	reopenFailing bool  // inside a reopen-error episode (logged once)
	reopenFails   int64 // failed attempts in this episode
	reopenAt      int64 // next attempt
	st            unix.Stat_t

	kinds kindMask // --export-file-kinds: the kinds written
	log   *logger
	stats *observerStats // exportDropped, exportWriteErrors
}

const (
	eventFlushInterval = 100_000_000 // ns: contract §5, "at least every 100 ms"
	eventBufSoftLimit  = 32 << 10    // flush early past this many buffered bytes
	eventWriteChunk    = 64 << 10    // most bytes one write(2) of the loop may take
	eventBufMax        = 1 << 20     // most bytes held while the file cannot take them
	eventLineRoom      = 4 << 10     // headroom past eventBufMax for the line being added
	eventRetryInterval = 1_000_000_000
)

// openEventFile opens the event file at path, rotated past maxBytes (0
// never) with keep generations; failures are logged to log and counted in
// stats.
func openEventFile(path string, maxBytes int64, keep int, log *logger, stats *observerStats) (*eventFile, error) {
	f := &eventFile{path: path, fd: -1, kinds: allKinds, buf: make([]byte, 0, eventBufMax+eventLineRoom), log: log, stats: stats,
		maxBytes: maxBytes, keep: keep, cpath: append([]byte(path), 0), newPath: path + ".new", oldPath: path + ".expired"}
	if f.maxBytes > 0 {
		for i := 1; i <= f.keep; i++ {
			f.gens = append(f.gens, path+"."+strconv.Itoa(i))
		}
	}
	fd, st, err := openExportPath(path, false)
	if err != nil {
		return nil, err
	}
	f.use(fd, &st)
	return f, nil
}

// openExportPath opens path for appending, creating it (exclusively, when
// excl). A symlink at the path is never followed (O_NOFOLLOW): the observer
// may run as root and the directory may be writable by others.
func openExportPath(path string, excl bool) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	flags := unix.O_WRONLY | unix.O_APPEND | unix.O_CREAT | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	if excl {
		flags |= unix.O_EXCL
	}
	fd, err := unix.Open(path, flags, 0o640)
	if err != nil {
		if err == unix.ELOOP || err == unix.EMLINK {
			return -1, st, errorf("export file %s: is a symbolic link; refusing to follow it", path)
		}
		return -1, st, wrapf(err, "export file %s", path)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, wrapf(err, "export file %s", path)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		unix.Close(fd)
		return -1, st, errorf("export file %s: is a directory", path)
	}
	// A regular file with a second name may be another file hard-linked
	// here by whoever can write the directory (fs.protected_hardlinks is
	// off on many routers, and never binds root): appending would clobber
	// it, as a symlink would. Nothing the observer or logrotate does leaves
	// the event file with two names (TestHardLinkAtExportFile).
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
		unix.Close(fd)
		return -1, st, errorf("export file %s: has %d hard links; refusing to append to a file that has another name", path, st.Nlink)
	}
	return fd, st, nil
}

// use makes fd, described by st, the file lines go to, closing the one
// before.
func (f *eventFile) use(fd int, st *unix.Stat_t) {
	if f.fd >= 0 {
		unix.Close(f.fd)
	}
	f.fd = fd
	f.dev, f.ino = uint64(st.Dev), uint64(st.Ino)
	f.size = st.Size
	f.regular = st.Mode&unix.S_IFMT == unix.S_IFREG
	f.detached = false
}

// emit buffers one event line when the event file is configured (f non-nil).
func (f *eventFile) emit(e *event, now int64) {
	if f != nil {
		f.add(e, now)
	}
}

// add buffers one event line, or drops it when the buffer is full.
func (f *eventFile) add(e *event, now int64) {
	if !f.kinds.has(e.kind) {
		return // --export-file-kinds leaves it out; the metrics still count it
	}
	if f.dirtySince == 0 {
		f.dirtySince = now
	}
	if len(f.buf) >= eventBufMax {
		f.dropped++
		f.stats.exportDropped++
		return
	}
	if f.dropped > 0 {
		f.buf = appendDropMarker(f.buf, now, f.dropped)
		f.dropped = 0
	}
	f.buf = appendEvent(f.buf, e)
}

// appendDropMarker appends the io line that marks where lines were lost.
func appendDropMarker(b []byte, now int64, n uint64) []byte {
	b = strconv.AppendInt(b, now, 10)
	b = append(b, "\tio\t-\t-\t-\tevent file buffer full: "...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, " events dropped\n"...)
}

// due reports whether the buffer should be written (or the path opened
// again) now.
func (f *eventFile) due(now int64) bool {
	if f.reopenPending && now >= f.reopenAt {
		return true
	}
	if f.dirtySince == 0 || f.detached {
		return false
	}
	if f.failing {
		return now >= f.retryAt
	}
	return len(f.buf) >= eventBufSoftLimit || now-f.dirtySince >= eventFlushInterval
}

// nextDeadline returns when the buffer must be written or the path opened
// again, 0 for never.
func (f *eventFile) nextDeadline() int64 {
	d := int64(0)
	if f.dirtySince != 0 && !f.detached {
		if f.failing {
			d = f.retryAt
		} else {
			d = f.dirtySince + eventFlushInterval
		}
	}
	if f.reopenPending && (d == 0 || f.reopenAt < d) {
		d = f.reopenAt
	}
	return d
}

// flushStep writes at most eventWriteChunk bytes of whole lines so that
// the loop can drain the socket between steps, rotating first when the
// next line would take the file past --export-file-max-bytes. It returns
// true when nothing more can be written now (the buffer is empty, or the
// file is failing or has left its path).
func (f *eventFile) flushStep(now int64) bool {
	if f.reopenPending && now >= f.reopenAt {
		f.retryReopen(now)
	}
	if len(f.buf) == 0 {
		f.dirtySince = 0
		if f.dropped > 0 {
			// Lines were dropped and none came since: mark the gap now.
			f.buf = appendDropMarker(f.buf, now, f.dropped)
			f.dropped = 0
			f.dirtySince = now
			return false
		}
		return true
	}
	if f.detached {
		return true // the lines wait for the path to open again
	}
	if f.regular && f.left() {
		f.leftPath(now)
		if f.detached {
			return true
		}
	}
	n := wholeLines(f.buf, eventWriteChunk)
	if f.maxBytes > 0 && f.regular && f.size+int64(n) > f.maxBytes && now >= f.rotateAt {
		if fit := linesWithin(f.buf[:n], f.maxBytes-f.size); fit > 0 {
			n = fit // the lines that still fit go to this generation
		} else if f.size == 0 {
			n = linesWithin(f.buf[:n], int64(bytes.IndexByte(f.buf[:n], '\n')+1)) // one line longer than the limit: alone, whole
		} else if err := f.rotate(); err != nil {
			f.stats.exportWriteErrors++
			f.rotateAt = now + eventRetryInterval
			if !f.rotateFailing {
				f.rotateFailing = true
				f.log.error("event file rotation failed; every file is left as it was, writing goes on past the size limit, retrying every second",
					fStr("path", f.path), fStr("err", err.Error()))
			}
		} else {
			if f.rotateFailing {
				f.rotateFailing = false
				f.log.info("event file rotated again", fStr("path", f.path))
			}
			return false
		}
	}
	w, err := unix.Write(f.fd, f.buf[:n])
	if err == unix.EINTR {
		return false
	}
	if err == unix.EAGAIN {
		return true // a pipe or FIFO that is full: try at the next flush
	}
	if err != nil || w <= 0 {
		if err == nil {
			err = unix.EIO
		}
		f.writeFailed(now, err)
		return true
	}
	if w < n && f.buf[w-1] != '\n' {
		// Short write inside a line (the disk filled up): cut the file back
		// to the last whole line so a reader never sees half of one.
		whole := 0
		for i := w - 1; i >= 0; i-- {
			if f.buf[i] == '\n' {
				whole = i + 1
				break
			}
		}
		if unix.Ftruncate(f.fd, f.size+int64(whole)) == nil {
			w = whole
		}
	}
	f.size += int64(w)
	rest := copy(f.buf, f.buf[w:])
	f.buf = f.buf[:rest]
	if w < n {
		// The disk took only part: a failing episode until a write is whole.
		f.writeFailed(now, unix.ENOSPC)
		return true
	}
	if f.failing {
		f.failing = false
		f.log.info("event file writable again", fStr("path", f.path), fInt("failed_writes", f.failedOps))
		f.failedOps = 0
	}
	if rest == 0 && f.dropped == 0 {
		f.dirtySince = 0
		return true
	}
	return false
}

// left reports whether the open file must take no more lines: it was
// removed (no name left, so whatever it is given is lost), or, while the
// observer rotates the file itself, the path no longer names it (it was
// moved away, e.g. archived by an operator, or replaced). Without
// rotation a moved file is logrotate's business: it renames the file and
// sends SIGHUP, and until then the file keeps its lines. One fstat per
// write, plus, when rotating, an open(O_PATH)+fstat of the path: no
// allocation.
func (f *eventFile) left() bool {
	if unix.Fstat(f.fd, &f.st) == nil && f.st.Nlink == 0 {
		return true
	}
	if f.maxBytes == 0 {
		return false
	}
	switch err := statNoFollow(f.cpath, &f.st); err {
	case nil:
		return uint64(f.st.Dev) != f.dev || uint64(f.st.Ino) != f.ino
	case unix.ENOENT, unix.ENOTDIR:
		return true
	default:
		return false // cannot tell (EACCES, out of descriptors): keep writing
	}
}

// leftPath stops writing to a file that left its path and opens the path
// again, creating a fresh file there as an operator who moved or removed
// the live file expects (the generations are not shifted: the file that
// left was not rotated). If the path cannot be opened, lines wait in
// memory and the open is retried every second.
func (f *eventFile) leftPath(now int64) {
	if !f.reopenFailing {
		f.log.info("event file was removed or moved away; opening its path again", fStr("path", f.path))
	}
	f.detached = true
	f.reopenPending = true
	f.retryReopen(now)
}

// retryReopen opens the path again after a failed reopen or when the file
// left its path; a failure is counted, logged once per episode and
// retried after eventRetryInterval.
func (f *eventFile) retryReopen(now int64) {
	fd, st, err := openExportPath(f.path, false)
	if err != nil {
		f.stats.exportWriteErrors++
		f.reopenFails++
		f.reopenAt = now + eventRetryInterval
		if !f.reopenFailing {
			f.reopenFailing = true
			where := "events go on into the file it had"
			if f.detached {
				where = "events are kept in memory (up to 1 MiB)"
			}
			f.log.error("event file cannot be opened; "+where+", retrying every second",
				fStr("path", f.path), fStr("err", err.Error()))
			f.emit(&event{ns: now, kind: evIO, payload: "reopen: " + err.Error()}, now)
		}
		return
	}
	f.use(fd, &st)
	f.reopenPending = false
	if f.reopenFailing {
		f.reopenFailing = false
		f.log.info("event file reopened", fStr("path", f.path), fInt("failed_attempts", f.reopenFails))
		f.reopenFails = 0
	}
}

// wholeLines returns the length of the longest prefix of b, at most limit
// bytes, that ends a line; a single line longer than limit is returned
// whole rather than split.
func wholeLines(b []byte, limit int) int {
	if len(b) <= limit {
		return len(b)
	}
	for n := limit; n > 0; n-- {
		if b[n-1] == '\n' {
			return n
		}
	}
	for n := limit; n < len(b); n++ {
		if b[n] == '\n' {
			return n + 1
		}
	}
	return len(b)
}

// linesWithin returns the length of the longest prefix of b that ends a
// line and is at most room bytes, 0 when the first line is longer.
func linesWithin(b []byte, room int64) int {
	for n := int(min(room, int64(len(b)))); n > 0; n-- {
		if b[n-1] == '\n' {
			return n
		}
	}
	return 0
}

// writeFailed counts a failed write and logs it once per episode; the
// write is retried every eventFlushInterval.
func (f *eventFile) writeFailed(now int64, err error) {
	f.stats.exportWriteErrors++
	f.failedOps++
	if !f.failing {
		f.failing = true
		f.log.error("event file write failed; events are kept in memory (up to 1 MiB) and retried",
			fStr("path", f.path), fStr("err", err.Error()))
	}
	f.retryAt = now + eventFlushInterval
}

// rotate shifts PATH.(keep-1) → PATH.keep, …, PATH → PATH.1 (the oldest
// generation is discarded) and starts a fresh PATH, or, when any step
// fails, leaves every file as it was and returns why; the caller writes
// on into PATH and retries later.
//
// The fresh file is made first, as PATH.new, so that the step that needs
// a new inode (a full tmpfs or flash file system may have none) comes
// before anything is renamed; the oldest generation is only set aside, as
// PATH.expired, until the rotation is certain. When no inode is left for
// PATH.new, the set-aside oldest generation becomes the fresh file,
// emptied: a rotation then needs no inode at all. The remaining steps
// are renames within the directory, undone in reverse order if one fails.
func (f *eventFile) rotate() error {
	if f.keep == 0 {
		return f.restart()
	}
	type move struct{ from, to string }
	var done []move
	rename := func(from, to string) error {
		if err := unix.Rename(from, to); err != nil {
			return err
		}
		done = append(done, move{from, to})
		return nil
	}
	undo := func() {
		for i := len(done) - 1; i >= 0; i-- {
			unix.Rename(done[i].to, done[i].from)
		}
	}
	oldest := f.gens[f.keep-1]
	setAside := false
	if err := rename(oldest, f.oldPath); err == nil {
		setAside = true
	} else if err != unix.ENOENT {
		return wrapf(err, "rename %s", oldest)
	}
	fd, st, err := f.createNew()
	recycled := false
	if err != nil && setAside && noRoom(err) {
		// No inode for a new file: the discarded generation becomes it.
		// openExportPath refuses a symlink or a file with another name,
		// so only a file the observer made is ever emptied.
		if fd, st, err = openExportPath(f.oldPath, false); err == nil {
			recycled = true
		}
	}
	if err != nil {
		undo()
		return err
	}
	fresh := f.newPath
	if recycled {
		fresh = f.oldPath
	}
	fail := func(err error) error {
		unix.Close(fd)
		if !recycled {
			unix.Unlink(f.newPath)
		}
		undo()
		return err
	}
	for i := f.keep - 1; i >= 1; i-- {
		if err := rename(f.gens[i-1], f.gens[i]); err != nil && err != unix.ENOENT {
			return fail(wrapf(err, "rename %s", f.gens[i-1]))
		}
	}
	if err := rename(f.path, f.gens[0]); err != nil {
		return fail(wrapf(err, "rename %s", f.path))
	}
	if recycled {
		// Emptied before it gets the live name, so that a reader
		// following PATH (tail -F) never sees the old lines again.
		if err := unix.Ftruncate(fd, 0); err != nil {
			return fail(wrapf(err, "truncate %s", f.oldPath))
		}
		st.Size = 0
	}
	if err := unix.Rename(fresh, f.path); err != nil {
		return fail(wrapf(err, "rename %s", fresh))
	}
	if setAside && !recycled {
		unix.Unlink(f.oldPath)
	}
	f.use(fd, &st)
	return nil
}

// restart is rotation with --export-file-keep 0: PATH is replaced by a
// fresh file in one rename, or, with no inode for a new file, emptied.
func (f *eventFile) restart() error {
	fd, st, err := f.createNew()
	if err != nil {
		if !noRoom(err) {
			return err
		}
		if err := unix.Ftruncate(f.fd, 0); err != nil {
			return wrapf(err, "truncate %s", f.path)
		}
		f.size = 0
		return nil
	}
	if err := unix.Rename(f.newPath, f.path); err != nil {
		unix.Close(fd)
		unix.Unlink(f.newPath)
		return wrapf(err, "rename %s", f.newPath)
	}
	f.use(fd, &st)
	return nil
}

// createNew creates PATH.new exclusively. One that exists is a leftover of
// an observer killed in the middle of a rotation (or something planted):
// it is removed (a symlink itself, never its target) and created anew.
func (f *eventFile) createNew() (int, unix.Stat_t, error) {
	fd, st, err := openExportPath(f.newPath, true)
	if errors.Is(err, unix.EEXIST) {
		unix.Unlink(f.newPath)
		fd, st, err = openExportPath(f.newPath, true)
	}
	return fd, st, err
}

// noRoom reports whether err says the file system has no room (no free
// inode, or the quota is spent).
func noRoom(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// flushAll writes everything it can, for shutdown and reopen.
func (f *eventFile) flushAll() {
	for i := 0; i < 1<<16; i++ {
		if f.flushStep(monoNow()) && (len(f.buf) == 0 || f.failing || f.detached) {
			return
		}
	}
}

// reopen flushes into the file it has, then opens the path again (SIGHUP,
// for logrotate). It reports whether that worked; if not, the failure is
// counted and logged (once per episode) and the open is retried every
// second: meanwhile lines go on into the file it had, or, if that file
// was removed, wait in memory.
func (f *eventFile) reopen(now int64) bool {
	f.flushAll()
	f.reopenPending = true
	f.retryReopen(now)
	return !f.reopenPending
}

// close flushes and closes the file at shutdown. Lines that can go
// nowhere (the path has been failing and the file they were meant for is
// gone) are counted as dropped and logged.
func (f *eventFile) close() {
	if f.reopenPending {
		f.retryReopen(monoNow())
	}
	f.flushAll()
	if n := bytes.Count(f.buf, []byte{'\n'}); n > 0 && (f.detached || f.failing) {
		f.stats.exportDropped += uint64(n)
		f.log.error("event file could not take its last lines at exit", fStr("path", f.path), fInt("lines", int64(n)))
	}
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}
