//go:build linux

package loadgen

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes one load run.
type Config struct {
	Socket string   // the observer's (or bare receiver's) socket
	Pids   []uint32 // existing pids to send for, e.g. Children.Pids

	// Paced mode: every agent beats RateHz times a second, and the beats
	// of all agents are spread evenly over each period (agent i sends at
	// offset i/(N·RateHz)), never in bursts.
	RateHz float64

	// Flood mode: send round-robin over Pids as fast as possible.
	Flood bool
	// Beats stops a flood after this many frames were queued (0: run for
	// Duration only).
	Beats int64

	// Duration bounds the run; 0 means until Beats (flood) or Stop.
	Duration time.Duration

	// Silence: from SilenceAt after the start, agents whose index is a
	// multiple of SilenceEvery stop beating, the rest go on (0: none).
	SilenceEvery int
	SilenceAt    time.Duration

	// Stop ends the run early when closed (e.g. on SIGINT).
	Stop <-chan struct{}

	// Also, when set, is a second receiver's socket that gets every beat
	// of a paced run too, the two sends of a beat back to back, which one
	// first alternating from beat to beat and, for each agent, from one
	// period to the next: two receivers measured side by side under the
	// same load at the same moments, so that what the machine does to one
	// (a vCPU the hypervisor did not run, a late sender) it does to the
	// other. Result.Also counts its sends.
	Also string

	// Nonces, when not nil, holds each agent's last nonce (len(Pids)
	// entries) and is updated in place, so that one run can continue
	// another's agents. Otherwise every agent starts again from nonce 1.
	Nonces []uint64
}

// Result is what a run did, as counted by the sender.
type Result struct {
	Mode   string  `json:"mode"`
	Agents int     `json:"agents"`
	RateHz float64 `json:"rate_hz,omitempty"`
	// Tally: what the receiver (Config.Socket) was sent and refused.
	Tally
	DurationSec float64 `json:"duration_s"`
	SendRate    float64 `json:"sent_per_s"`
	// MaxLagUs is how far behind its schedule the paced sender ever got:
	// a large value means beats went out in a burst, not spread evenly.
	MaxLagUs float64 `json:"max_lag_us,omitempty"`
	Silenced int     `json:"silenced,omitempty"`
	// SilencedPids are the agents that went silent at SilenceAt.
	SilencedPids []uint32 `json:"-"`
	// SilenceMono is CLOCK_MONOTONIC (ns) when the silence began, the
	// observer's clock.
	SilenceMono int64 `json:"silence_mono_ns,omitempty"`
	// Late counts beats sent more than LateAfter behind schedule.
	Late int64 `json:"late,omitempty"`
	// Also counts the sends to Config.Also, when set, and LostBoth the
	// beats that both receivers refused.
	Also     *Tally `json:"also,omitempty"`
	LostBoth int64  `json:"lost_both,omitempty"`
}

// Tally is what one receiver of a run was sent and refused.
type Tally struct {
	Sent int64 `json:"sent"` // frames the kernel queued
	Lost int64 `json:"lost"` // frames refused with EAGAIN/ENOBUFS (queue full)
	// LostLate counts the lost beats that went out more than LateAfter
	// behind schedule: the sender itself was not scheduled in time and
	// then sent its overdue beats back to back, a burst that a queue of
	// 10 cannot hold whatever the receiver does.
	LostLate int64 `json:"lost_late,omitempty"`
	// LostRuns counts the runs of an agent's consecutive lost beats: each
	// is a silence of at least two periods, so a stall (a false one) for
	// any receiver whose threshold is shorter than that.
	LostRuns int64 `json:"lost_runs,omitempty"`
	// LostPerSecond counts the lost beats of each second of a paced run,
	// to tell start-up losses from steady-state ones.
	LostPerSecond []int64 `json:"lost_per_second,omitempty"`
}

// count adds one send's outcome in second sec of the run; lostLast is
// whether the agent's previous beat to the same receiver was lost.
func (t *Tally) count(ok, late bool, lostLast *bool, sec int) {
	if !ok && !*lostLast {
		t.LostRuns++
	}
	*lostLast = !ok
	if ok {
		t.Sent++
		return
	}
	t.Lost++
	if late {
		t.LostLate++
	}
	for len(t.LostPerSecond) <= sec {
		t.LostPerSecond = append(t.LostPerSecond, 0)
	}
	t.LostPerSecond[sec]++
}

// The runtime reads the monotonic clock through the vDSO; x/sys's
// ClockGettime is a real syscall. One raw reading fixes the offset.
var (
	clockStart = time.Now()
	clockMono0 = monoRaw()
)

func monoRaw() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// LateAfter is how far behind its schedule a paced beat may go out before
// it counts as late.
const LateAfter = time.Millisecond

// Mono returns CLOCK_MONOTONIC in nanoseconds, the clock the observer
// stamps its events with.
func Mono() int64 {
	return clockMono0 + int64(time.Since(clockStart))
}

// sleepUntil sleeps until CLOCK_MONOTONIC reaches t with clock_nanosleep
// (TIMER_ABSTIME): the runtime's timers round sub-millisecond waits up,
// which would turn an even spread into bursts.
func sleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
	}
}

// Run sends frames as cfg says and returns what was sent and lost.
func Run(cfg Config) (Result, error) {
	n := len(cfg.Pids)
	if n == 0 {
		return Result{}, errors.New("loadgen: no pids to send for")
	}
	if !cfg.Flood && cfg.RateHz <= 0 {
		return Result{}, errors.New("loadgen: need a rate per agent, or flood mode")
	}
	if cfg.Duration <= 0 && !(cfg.Flood && cfg.Beats > 0) && cfg.Stop == nil {
		return Result{}, errors.New("loadgen: the run has no end: give a duration")
	}
	s, err := NewSender(cfg.Socket)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	var also *Sender
	if cfg.Also != "" {
		if cfg.Flood {
			return Result{}, errors.New("loadgen: a second receiver is for paced runs only")
		}
		if also, err = NewSender(cfg.Also); err != nil {
			return Result{}, err
		}
		defer also.Close()
	}
	if cfg.Nonces == nil {
		cfg.Nonces = make([]uint64, n)
	} else if len(cfg.Nonces) != n {
		return Result{}, errors.New("loadgen: need one nonce per pid")
	}
	if cfg.Flood {
		return runFlood(s, cfg)
	}
	return runPaced(s, also, cfg)
}

func stopped(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func runFlood(s *Sender, cfg Config) (Result, error) {
	n := len(cfg.Pids)
	nonces := cfg.Nonces
	res := Result{Mode: "flood", Agents: n}
	start := Mono()
	end := int64(-1)
	if cfg.Duration > 0 {
		end = start + int64(cfg.Duration)
	}
	var k int
	for {
		if k&1023 == 0 {
			if stopped(cfg.Stop) || (end > 0 && Mono() >= end) {
				break
			}
		}
		if cfg.Beats > 0 && res.Sent >= cfg.Beats {
			break
		}
		nonces[k]++
		ok, err := s.Send(StatusOK, cfg.Pids[k], 1, nonces[k], uint32(k))
		if err != nil {
			return res, fmt.Errorf("loadgen: pid %d: %w", cfg.Pids[k], err)
		}
		if ok {
			res.Sent++
		} else {
			res.Lost++
		}
		if k++; k == n {
			k = 0
		}
	}
	res.DurationSec = float64(Mono()-start) / 1e9
	res.SendRate = float64(res.Sent) / res.DurationSec
	return res, nil
}

func runPaced(s, also *Sender, cfg Config) (res Result, err error) {
	n := len(cfg.Pids)
	nonces := cfg.Nonces
	silent, lostLast, alsoLostLast := make([]bool, n), make([]bool, n), make([]bool, n)
	res = Result{Mode: "paced", Agents: n, RateHz: cfg.RateHz}
	var second Tally
	start := Mono()
	var maxLag int64
	defer func() { // on every return: what was counted until then
		if also != nil {
			res.Also = &second
		}
		res.DurationSec = float64(Mono()-start) / 1e9
		res.SendRate = float64(res.Sent) / res.DurationSec
		res.MaxLagUs = float64(maxLag) / 1e3
	}()
	if cfg.SilenceEvery > 0 {
		for i := 0; i < n; i += cfg.SilenceEvery {
			silent[i] = true
			res.SilencedPids = append(res.SilencedPids, cfg.Pids[i])
		}
		res.Silenced = len(res.SilencedPids)
	}
	interval := 1e9 / (float64(n) * cfg.RateHz) // ns between two sends
	end := int64(1<<63 - 1)
	if cfg.Duration > 0 {
		end = start + int64(cfg.Duration)
	}
	silenceAt := int64(1<<63 - 1)
	if cfg.SilenceEvery > 0 {
		silenceAt = start + int64(cfg.SilenceAt)
		res.SilenceMono = silenceAt
	}
	var lastYield int64
	for k := int64(0); ; {
		due := start + int64(float64(k)*interval)
		if due >= end || stopped(cfg.Stop) {
			break
		}
		now := Mono()
		if now-lastYield > 5_000_000 {
			// A goroutine that only ever blocks in syscalls looks like a
			// hog to sysmon, which then retakes its P at every sleep
			// (futex wakes of other threads each time); passing through
			// the scheduler now and then keeps the sender cheap.
			runtime.Gosched()
			lastYield = now
		}
		if due > now {
			sleepUntil(due)
			continue
		}
		lag := now - due
		if lag > maxLag {
			maxLag = lag
		}
		i := int(k % int64(n))
		k++
		if silent[i] && due >= silenceAt {
			continue
		}
		nonces[i]++
		late := lag > int64(LateAfter)
		if late {
			res.Late++
		}
		sec := int((due - start) / 1e9)
		// The receiver sent to first alternates from one beat to the next
		// and, for each agent, from one period to the next.
		alsoFirst := (int64(i)+(k-1)/int64(n))&1 == 0
		alsoOK := true
		if also != nil && alsoFirst {
			if alsoOK, err = sendTo(also, &second, cfg.Pids[i], now, nonces[i], i, late, &alsoLostLast[i], sec); err != nil {
				return res, err
			}
		}
		var ok bool
		if ok, err = s.Send(StatusOK, cfg.Pids[i], uint64(now), nonces[i], uint32(i)); err != nil {
			return res, fmt.Errorf("loadgen: pid %d: %w", cfg.Pids[i], err)
		}
		res.count(ok, late, &lostLast[i], sec)
		if also != nil && !alsoFirst {
			if alsoOK, err = sendTo(also, &second, cfg.Pids[i], now, nonces[i], i, late, &alsoLostLast[i], sec); err != nil {
				return res, err
			}
		}
		if !ok && !alsoOK {
			res.LostBoth++
		}
	}
	return res, nil
}

// sendTo sends one paced beat to the second receiver and counts it.
func sendTo(s *Sender, t *Tally, pid uint32, now int64, nonce uint64, i int, late bool, lostLast *bool, sec int) (bool, error) {
	ok, err := s.Send(StatusOK, pid, uint64(now), nonce, uint32(i))
	if err != nil {
		return false, fmt.Errorf("loadgen: second receiver, pid %d: %w", pid, err)
	}
	t.count(ok, late, lostLast, sec)
	return ok, nil
}
