//go:build linux

package loadgen

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Children are N sleeping child processes whose pids the sender speaks
// for. They run in one process group of their own (so a terminal's Ctrl-C
// reaches only the load generator, which then kills them) and carry
// PR_SET_PDEATHSIG=SIGKILL, tied to a thread that lives exactly as long as
// the Children: even a SIGKILLed load generator leaves no sleeper behind.
type Children struct {
	Pids []uint32

	procs   []*os.Process
	pgid    int
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// SpawnChildren starts n processes of sleepBin (e.g. /bin/sleep) that sleep
// for an hour, or until Close kills them.
func SpawnChildren(n int) (*Children, error) {
	if n <= 0 {
		return nil, errors.New("loadgen: need at least one child")
	}
	sleepBin, err := exec.LookPath("sleep")
	if err != nil {
		return nil, fmt.Errorf("loadgen: %v", err)
	}
	c := &Children{stop: make(chan struct{}), stopped: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// PR_SET_PDEATHSIG fires when the parent *thread* exits. This
		// goroutine keeps its thread locked and never unlocks it, so the
		// thread ends when the goroutine returns (after Close has killed and
		// reaped the children) or when the process dies.
		runtime.LockOSThread()
		defer close(c.stopped)
		ready <- c.spawn(sleepBin, n)
		<-c.stop
		c.killAndReap()
	}()
	if err := <-ready; err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Children) spawn(sleepBin string, n int) error {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	attr := &os.ProcAttr{
		Files: []*os.File{devnull, devnull, devnull},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	c.procs = make([]*os.Process, 0, n)
	c.Pids = make([]uint32, 0, n)
	for i := 0; i < n; i++ {
		attr.Sys.Pgid = c.pgid
		p, err := os.StartProcess(sleepBin, []string{"sleep", "3600"}, attr)
		if err != nil {
			return fmt.Errorf("loadgen: starting child %d of %d: %v", i+1, n, err)
		}
		if c.pgid == 0 {
			c.pgid = p.Pid
		}
		c.procs = append(c.procs, p)
		c.Pids = append(c.Pids, uint32(p.Pid))
	}
	return nil
}

func (c *Children) killAndReap() {
	if c.pgid != 0 {
		syscall.Kill(-c.pgid, syscall.SIGKILL)
	}
	for _, p := range c.procs {
		p.Kill() // in case it left the group; harmless otherwise
		p.Wait()
	}
	c.procs = nil
}

// Close kills every child with SIGKILL and reaps it. Safe to call twice.
func (c *Children) Close() {
	c.once.Do(func() { close(c.stop) })
	<-c.stopped
}
