package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Recovery (contract §7): on a stall, run the configured command for the
// stalled pid without ever waiting for it in the loop. The loop pays the
// fork/exec cost only; children are reaped when the kernel says they exited
// (a readable pidfd, or SIGCHLD through the wake fd), killed past
// --recovery-timeout-ms, and killed and reaped at shutdown.
//
// os/exec is not used: Cmd.Wait needs a goroutine per child. Children are
// started with syscall.StartProcess and reaped with wait4(pid, WNOHANG) on
// the pids this file spawned only, never wait4(-1): a pid the observer did
// not start is none of its business.

const (
	// maxRecoveryChildren bounds the children running at once; a stall
	// beyond it is refused rather than queued.
	maxRecoveryChildren = 64

	// recoveryExecPath is the whole PATH of --recovery-exec children, and
	// where a command name without a slash is looked up.
	recoveryExecPath = "/usr/sbin:/usr/bin:/sbin:/bin"

	recoveryShell  = "/bin/sh"
	pidPlaceholder = "{pid}"

	// spawnBudget is how many children one loop turn starts. Each spawn
	// holds the loop for a fork/exec (about a millisecond on a small CPU):
	// a mass hang's spawns are spread over turns, so stalls falling due
	// meanwhile are surfaced at most a few spawns late.
	spawnBudget = 4
)

// pidfdAllowed lets tests force the SIGCHLD fallback that kernels before
// 5.3 (no pidfd_open) depend on.
var pidfdAllowed = true

// inheritedEnvDropped are variables a --recovery-cmd child does not inherit:
// systemd addresses them to the observer's own process alone.
var inheritedEnvDropped = []string{
	"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "VARTA_PID",
}

// argTemplate is one argument of the command with every {pid} marked:
// parts are the literal pieces between the placeholders. An argument
// without a placeholder has a single part and is reused as is.
type argTemplate struct {
	parts []string
}

func parseArgTemplate(s string) argTemplate {
	return argTemplate{parts: strings.Split(s, pidPlaceholder)}
}

// expand returns the argument with every {pid} replaced by pid, allocating
// only when there is a placeholder.
func (a argTemplate) expand(pid string) string {
	if len(a.parts) == 1 {
		return a.parts[0]
	}
	n := len(pid) * (len(a.parts) - 1)
	for _, p := range a.parts {
		n += len(p)
	}
	var b strings.Builder
	b.Grow(n)
	for i, p := range a.parts {
		if i > 0 {
			b.WriteString(pid)
		}
		b.WriteString(p)
	}
	return b.String()
}

// splitExecArgs splits a --recovery-exec command line on runs of spaces
// (and other white space). There is no quoting: an argument cannot hold a
// space, and quotes, semicolons, $ and the like are ordinary characters.
func splitExecArgs(cmd string) []string { return strings.Fields(cmd) }

// killReason tells why the observer killed a child.
type killReason uint8

const (
	notKilled killReason = iota
	killedTimeout
	killedShutdown
)

var killReasonNames = [...]string{"", "timeout", "shutdown"}

// recoveryChild is one running recovery command. Its pid is also its
// process group id (Setpgid), so a kill reaches its descendants.
type recoveryChild struct {
	pid      int
	agentPid uint32
	agent    uint16 // 1 + agent section, 0 none
	pidfd    int    // -1: reaped on SIGCHLD
	started  int64  // monotonic ns
	deadline int64  // kill at, 0 never (or already killed)
	killed   killReason
}

// pendingSpawn is a recovery decided at a stall (or a missing agent, or
// a give-up) and not started yet.
type pendingSpawn struct {
	agentPid uint32 // 0: none (missing_exec)
	agent    uint16 // 1 + agent section, 0 none
	stallNs  int64
	cmd      *recoveryCommand
}

// recoveryCommand is one command a recovery runs: --recovery-exec or
// --recovery-cmd with their debounce and timeout, or an agent section's
// recovery_exec, recovery_cmd, missing_exec or give_up_exec.
type recoveryCommand struct {
	shell      bool
	command    string // as configured, for the log
	args       []argTemplate
	argv       []string // reused per spawn
	env        []string // the last entry is VARTA_PID, set per spawn
	debounce   int64    // ns, 0 none
	timeout    int64    // ns, 0 none
	debounceMs int64    // as configured, for the log
	timeoutMs  int64
}

// newRecoveryCommand prepares exec (run without a shell) or else cmd (run
// by /bin/sh -c); name is the option or flag, for its error.
func newRecoveryCommand(name, exec, cmd string, debounceMs, timeoutMs int64) (*recoveryCommand, error) {
	c := &recoveryCommand{debounce: debounceMs * 1_000_000, timeout: timeoutMs * 1_000_000,
		debounceMs: debounceMs, timeoutMs: timeoutMs}
	if exec != "" {
		c.command = exec
		fields := splitExecArgs(exec)
		if len(fields) == 0 {
			return nil, errorf("%s: %q names no command", name, exec)
		}
		for _, f := range fields {
			c.args = append(c.args, parseArgTemplate(f))
		}
		c.env = []string{"PATH=" + recoveryExecPath, ""}
	} else {
		c.shell = true
		c.command = cmd
		c.args = []argTemplate{{parts: []string{recoveryShell}}, {parts: []string{"-c"}}, parseArgTemplate(cmd)}
		c.env = inheritedEnv(os.Environ())
	}
	c.argv = make([]string, len(c.args))
	return c, nil
}

// recoverer runs the recovery command for stalled pids. A stall only
// decides (refused, debounced or spawn); the spawns run after the turn's
// stalls have all been surfaced, spawnBudget per turn, so a run of spawns
// never delays a stall event.
type recoverer struct {
	env        partEnv
	cmd        *recoveryCommand // the global one, nil when only agent sections have commands
	agents     *agentTable      // per-agent outcome counters; nil without agent sections
	attr       syscall.ProcAttr
	devNull    int
	trusted    bool // frame pids are kernel-checked; false refuses every recovery
	usePidfd   bool
	children   [maxRecoveryChildren]recoveryChild
	n          int
	pending    [maxRecoveryChildren]pendingSpawn // FIFO ring; n+npending ≤ maxRecoveryChildren
	pendHead   int
	npending   int
	nextKill   int64
	exitNames  [256]string
	pidBuf     [20]byte
	waitStatus syscall.WaitStatus
}

func newRecoverer(cfg *config, env partEnv) (*recoverer, error) {
	r := &recoverer{
		env:     env,
		trusted: hasDatagramCreds,
		devNull: -1,
	}
	for i := range r.exitNames {
		r.exitNames[i] = "exit_" + strconv.Itoa(i)
	}
	if cfg.recoveryExec != "" || cfg.recoveryCmd != "" {
		var err error
		if r.cmd, err = newRecoveryCommand("--recovery-exec", cfg.recoveryExec, cfg.recoveryCmd,
			cfg.recoveryDebounceMs, cfg.recoveryTimeoutMs); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errorf("recovery: /dev/null: %v", os.NewSyscallError("open", err))
	}
	r.devNull = fd
	if err := closeInheritedOnExec(); err != nil {
		env.log.warn("recovery children may inherit descriptors the observer inherited", fStr("err", err.Error()))
	}
	// Children write to the observer's stderr, so their messages land in
	// the daemon log next to the observer's own lines; stdout is kept for
	// the observer (--prom-addr prints the bound address there). When the
	// observer runs with stderr closed, children get /dev/null instead.
	out := uintptr(2)
	var st unix.Stat_t
	if unix.Fstat(2, &st) != nil {
		out = uintptr(fd)
	}
	r.attr = syscall.ProcAttr{
		Files: []uintptr{uintptr(fd), out, out},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	r.usePidfd = pidfdAllowed && pidfdWorks()
	return r, nil
}

// inheritedEnv is the environment of a --recovery-cmd child: the
// observer's own, as varta-watch 0.1.0 passed it, less the variables
// systemd meant for the observer alone, plus a VARTA_PID slot at the end.
func inheritedEnv(environ []string) []string {
	env := make([]string, 0, len(environ)+1)
next:
	for _, kv := range environ {
		for _, drop := range inheritedEnvDropped {
			if strings.HasPrefix(kv, drop) && len(kv) > len(drop) && kv[len(drop)] == '=' {
				continue next
			}
		}
		env = append(env, kv)
	}
	return append(env, "")
}

// logStart describes the recovery set-up once at start.
func (r *recoverer) logStart() {
	reap := "SIGCHLD"
	if r.usePidfd {
		reap = "pidfd"
	}
	if c := r.cmd; c != nil {
		mode := "exec"
		if c.shell {
			mode = "shell"
		}
		r.env.log.info("recovery enabled", fStr("mode", mode), fStr("command", c.command),
			fInt("debounce_ms", c.debounceMs), fInt("timeout_ms", c.timeoutMs),
			fInt("max_children", maxRecoveryChildren), fStr("reaping", reap))
	} else {
		r.env.log.info("recovery enabled for agent sections", fInt("max_children", maxRecoveryChildren), fStr("reaping", reap))
	}
	if !r.trusted {
		r.env.log.warn("recovery refused on this system: it attaches no per-datagram credentials, so a stalled pid could be forged; every stall will record a refused recovery")
		return
	}
	if r.cmd != nil {
		r.checkCommand(r.cmd)
	}
	if r.agents != nil {
		for i := range r.agents.agents {
			for _, c := range r.agents.agents[i].commands() {
				r.checkCommand(c)
			}
		}
	}
}

// checkCommand warns at start when the program of an exec command cannot
// be found or run.
func (r *recoverer) checkCommand(c *recoveryCommand) {
	if c != nil && !c.shell {
		path, err := resolveCommand(c, c.args[0].expand("0"))
		if err == nil && !isExecutable(path) {
			err = &os.PathError{Op: "exec", Path: path, Err: os.ErrPermission}
			var st unix.Stat_t
			if serr := unix.Stat(path, &st); serr != nil {
				err = &os.PathError{Op: "stat", Path: path, Err: serr}
			}
		}
		if err != nil {
			r.env.log.warn("recovery command not found; stalls record spawn_failed until it exists",
				fStr("command", c.args[0].expand("{pid}")), fStr("err", err.Error()))
		}
	}
}

// resolve finds the program to execute: a name with a slash as given, any
// other name in the fixed recovery PATH, as execvp(3) would.
func resolveCommand(c *recoveryCommand, name string) (string, error) {
	if c.shell || strings.IndexByte(name, '/') >= 0 {
		if c.shell {
			return recoveryShell, nil
		}
		return name, nil
	}
	for _, dir := range strings.Split(recoveryExecPath, ":") {
		if p := dir + "/" + name; isExecutable(p) {
			return p, nil
		}
	}
	return "", errorf("%s: not found in %s", name, recoveryExecPath)
}

// isExecutable reports whether path is a regular file this process may
// execute.
func isExecutable(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && unix.Access(path, unix.X_OK) == nil
}

// onStall decides the recovery of one stall with the global command.
func (r *recoverer) onStall(s *slot, now int64) { r.decide(s, r.cmd, 0, now) }

// decide decides the recovery of one stall of slot s with cmd (agent is
// its agent section, 1-based, 0 none): refused, debounced or spawned. It
// reports whether a spawn was decided.
func (r *recoverer) decide(s *slot, cmd *recoveryCommand, section uint16, now int64) bool {
	agent := s.pid
	switch {
	case !r.trusted:
		r.outcome(recRefused, agent, section, now, "refused")
		r.env.log.warn("recovery refused", fInt("pid", int64(agent)),
			fStr("reason", "no per-datagram credentials on this system: the pid could be forged"))
		return false
	case r.running(agent):
		r.outcome(recDebounced, agent, section, now, "debounced")
		r.env.log.info("recovery debounced", fInt("pid", int64(agent)),
			fStr("reason", "the previous recovery of this pid is still running"))
		return false
	case cmd.debounce > 0 && s.lastRecov != 0 && now-s.lastRecov < cmd.debounce:
		r.outcome(recDebounced, agent, section, now, "debounced")
		r.env.log.info("recovery debounced", fInt("pid", int64(agent)),
			fStr("reason", "within the debounce window"), fInt("debounce_ms", cmd.debounceMs),
			fInt("since_last_ms", (now-s.lastRecov)/1_000_000))
		return false
	}
	// A failed spawn uses up the window too: a broken command is not
	// retried, and logged, on every stall of a flapping agent.
	if r.queue(cmd, agent, section, now) {
		s.lastRecov = now
		return true
	}
	return false
}

// queue decides a spawn of cmd, or refuses it when too many children run.
func (r *recoverer) queue(cmd *recoveryCommand, agent uint32, section uint16, now int64) bool {
	if r.n+r.npending >= maxRecoveryChildren {
		r.outcome(recRefused, agent, section, now, "refused")
		r.env.log.warn("recovery refused", fInt("pid", int64(agent)),
			fStr("reason", "too many recovery children running"), fInt("running", int64(r.n+r.npending)))
		return false
	}
	r.pending[(r.pendHead+r.npending)%maxRecoveryChildren] = pendingSpawn{agentPid: agent, agent: section, stallNs: now, cmd: cmd}
	r.npending++
	return true
}

// running reports whether a recovery of agent is running or about to.
func (r *recoverer) running(agent uint32) bool {
	if agent == 0 {
		return false
	}
	for i := 0; i < r.n; i++ {
		if r.children[i].agentPid == agent {
			return true
		}
	}
	for i := 0; i < r.npending; i++ {
		if r.pending[(r.pendHead+i)%maxRecoveryChildren].agentPid == agent {
			return true
		}
	}
	return false
}

// spawnNext starts the oldest decided recovery, false when none is
// pending. The loop calls it at most spawnBudget times a turn and drains
// the socket between calls (observer.startRecoveries).
func (r *recoverer) spawnNext(now int64) bool {
	if r.npending == 0 {
		return false
	}
	p := r.pending[r.pendHead]
	r.pendHead = (r.pendHead + 1) % maxRecoveryChildren
	r.npending--
	r.spawn(p, now)
	return true
}

// spawn starts the command for agent. It costs one fork/exec (clone with
// CLONE_VFORK: the loop is blocked until the child has exec'd) and never
// waits for the child.
func (r *recoverer) spawn(p pendingSpawn, now int64) {
	agent, cmd := p.agentPid, p.cmd
	pid := ""
	if agent != 0 {
		pid = unsafeString(strconv.AppendUint(r.pidBuf[:0], uint64(agent), 10))
	}
	for i, a := range cmd.args {
		cmd.argv[i] = a.expand(pid)
	}
	cmd.env[len(cmd.env)-1] = "VARTA_PID=" + pid
	if agent == 0 {
		cmd.env[len(cmd.env)-1] = "VARTA_PID="
	}
	r.attr.Env = cmd.env
	path, err := resolveCommand(cmd, cmd.argv[0])
	var child int
	if err == nil {
		child, _, err = syscall.StartProcess(path, cmd.argv, &r.attr)
		if err != nil {
			err = &os.PathError{Op: "fork/exec", Path: path, Err: err}
		}
	}
	clear(cmd.argv) // drop references to this spawn's strings
	if err != nil {
		r.outcome(recSpawnFailed, agent, p.agent, now, "spawn_failed")
		r.env.log.error("recovery spawn failed", fInt("pid", int64(agent)), fStr("err", err.Error()))
		return
	}
	c := &r.children[r.n]
	r.n++
	*c = recoveryChild{pid: child, agentPid: agent, agent: p.agent, pidfd: -1, started: now}
	if cmd.timeout > 0 {
		c.deadline = now + cmd.timeout
		if r.nextKill == 0 || c.deadline < r.nextKill {
			r.nextKill = c.deadline
		}
	}
	if r.usePidfd {
		c.pidfd = r.watchPidfd(child)
	}
	r.outcome(recSpawned, agent, p.agent, now, "spawned")
	r.env.log.info("recovery spawned", fInt("pid", int64(agent)), fInt("child_pid", int64(child)))
}

// watchPidfd opens a pidfd for child and registers it with the poller; -1
// leaves the child to the SIGCHLD path. The child cannot have been reaped
// yet (only this loop reaps it), so the pid still names it.
func (r *recoverer) watchPidfd(child int) int {
	fd, err := pidfdOpen(child)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			r.usePidfd = false
			r.env.log.warn("pidfd_open is not available; reaping recovery children on SIGCHLD", fStr("err", err.Error()))
		}
		return -1
	}
	if r.env.poll.add(fd, true, false) != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

func (r *recoverer) outcome(oc recoveryOutcome, agent uint32, section uint16, now int64, payload string) {
	r.env.stats.recovery[oc]++
	if section != 0 && r.agents != nil {
		r.agents.agents[section-1].recoveries[oc]++
	}
	r.env.emit(&event{ns: now, kind: evRecovery, pid: agent, payload: payload}, now)
}

// owns reports whether fd is the pidfd of a child.
func (r *recoverer) owns(fd int) bool { return r.indexOfPidfd(fd) >= 0 }

func (r *recoverer) indexOfPidfd(fd int) int {
	for i := 0; i < r.n; i++ {
		if r.children[i].pidfd == fd {
			return i
		}
	}
	return -1
}

// handle reaps the child whose pidfd became readable: it has exited.
func (r *recoverer) handle(ev pollEvent, now int64) {
	if i := r.indexOfPidfd(ev.fd); i >= 0 {
		r.reap(i, now)
	}
}

// onSIGCHLD reaps every exited child that has no pidfd. Signals coalesce,
// so one SIGCHLD may stand for several exits: each such child is asked.
func (r *recoverer) onSIGCHLD(now int64) {
	for i := 0; i < r.n; {
		if r.children[i].pidfd >= 0 || !r.reap(i, now) {
			i++
		}
	}
}

// reap collects child i if it has exited, records the outcome and frees its
// entry (the last entry moves into i). It reports whether it did.
func (r *recoverer) reap(i int, now int64) bool {
	c := &r.children[i]
	var wpid int
	var err error
	for {
		wpid, err = syscall.Wait4(c.pid, &r.waitStatus, syscall.WNOHANG, nil)
		if err == nil || !retryable(err) {
			break
		}
	}
	if err == nil && wpid == 0 {
		return false // still running
	}
	agent, child, ms := c.agentPid, c.pid, (now-c.started)/1_000_000
	switch ws := r.waitStatus; {
	case err != nil:
		// ECHILD: someone else reaped it; nothing is known of its exit.
		r.env.log.error("recovery child lost", fInt("pid", int64(agent)), fInt("child_pid", int64(child)),
			fStr("err", os.NewSyscallError("wait4", err).Error()))
	case ws.Signaled() && c.killed != notKilled:
		r.outcome(recKilled, agent, c.agent, now, "killed")
		r.env.log.warn("recovery killed", fInt("pid", int64(agent)), fInt("child_pid", int64(child)),
			fStr("reason", killReasonNames[c.killed]), fInt("ran_ms", ms))
	default:
		// Death by a signal the observer did not send reads as the
		// shell's 128+N.
		code, sig := 0, ""
		if ws.Signaled() {
			code, sig = 128+int(ws.Signal()), ws.Signal().String()
		} else {
			code = ws.ExitStatus()
		}
		code &= 0xff
		if code == 0 {
			r.outcome(recExit0, agent, c.agent, now, r.exitNames[0])
			r.env.log.info("recovery finished", fInt("pid", int64(agent)), fInt("child_pid", int64(child)),
				fInt("exit_code", 0), fInt("ran_ms", ms))
		} else if sig == "" {
			r.outcome(recExitNonzero, agent, c.agent, now, r.exitNames[code])
			r.env.log.warn("recovery failed", fInt("pid", int64(agent)), fInt("child_pid", int64(child)),
				fInt("exit_code", int64(code)), fInt("ran_ms", ms))
		} else {
			r.outcome(recExitNonzero, agent, c.agent, now, r.exitNames[code])
			r.env.log.warn("recovery failed", fInt("pid", int64(agent)), fInt("child_pid", int64(child)),
				fInt("exit_code", int64(code)), fStr("signal", sig), fInt("ran_ms", ms))
		}
	}
	if c.pidfd >= 0 {
		r.env.poll.remove(c.pidfd)
		unix.Close(c.pidfd)
	}
	hadDeadline := c.deadline != 0
	r.n--
	r.children[i] = r.children[r.n]
	r.children[r.n] = recoveryChild{}
	if hadDeadline {
		r.recomputeNextKill()
	}
	return true
}

// nextDeadline is the next timeout kill, 0 none; a pending spawn is due at
// once (its stall's instant, in the past).
func (r *recoverer) nextDeadline() int64 {
	if r.npending > 0 {
		return r.pending[r.pendHead].stallNs
	}
	return r.nextKill
}

// fire kills the children past --recovery-timeout-ms. Pending spawns are
// started by the loop (spawnNext).
func (r *recoverer) fire(now int64) {
	if r.nextKill == 0 || now < r.nextKill {
		return
	}
	for i := 0; i < r.n; i++ {
		if c := &r.children[i]; c.deadline != 0 && c.deadline <= now {
			r.kill(c, killedTimeout)
		}
	}
	r.recomputeNextKill()
}

func (r *recoverer) recomputeNextKill() {
	r.nextKill = 0
	for i := 0; i < r.n; i++ {
		if d := r.children[i].deadline; d != 0 && (r.nextKill == 0 || d < r.nextKill) {
			r.nextKill = d
		}
	}
}

// kill sends SIGKILL to the child's process group, and to the child itself
// in case it left the group. The child is not reaped yet, so its pid (and
// the group named after it) cannot have been reused. Its outcome is
// recorded when it is reaped.
func (r *recoverer) kill(c *recoveryChild, why killReason) {
	c.deadline = 0
	if c.killed == notKilled {
		c.killed = why
	}
	syscall.Kill(-c.pid, syscall.SIGKILL)
	syscall.Kill(c.pid, syscall.SIGKILL)
}

// shutdown kills every child and reaps them for up to graceNs. Reaping
// polls wait4 with WNOHANG: the loop and the signal path are gone, and a
// child stuck in uninterruptible sleep must not hold the exit forever.
func (r *recoverer) shutdown(graceNs int64) {
	// Spawns decided in the last loop turn are dropped: starting a child
	// only to kill it helps no one.
	r.npending = 0
	for i := 0; i < r.n; i++ {
		r.kill(&r.children[i], killedShutdown)
	}
	r.nextKill = 0
	deadline := monoNow() + graceNs
	pause := 500 * time.Microsecond
	for {
		now := monoNow()
		for i := 0; i < r.n; {
			if !r.reap(i, now) {
				i++
			}
		}
		if r.n == 0 || now >= deadline {
			break
		}
		time.Sleep(min(pause, time.Duration(deadline-now)))
		pause = min(2*pause, 10*time.Millisecond)
	}
	if r.n > 0 {
		r.env.log.error("recovery children not reaped within the shutdown grace", fInt("running", int64(r.n)),
			fInt("first_child_pid", int64(r.children[0].pid)), fInt("shutdown_grace_ms", graceNs/1_000_000))
	}
	for i := 0; i < r.n; i++ {
		if fd := r.children[i].pidfd; fd >= 0 {
			unix.Close(fd)
		}
	}
	if r.devNull >= 0 {
		unix.Close(r.devNull)
		r.devNull = -1
	}
}
