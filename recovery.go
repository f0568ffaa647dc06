package main

import "errors"

// recoverer runs the recovery command for stalled pids. (Issue "Recovery".)
type recoverer struct{}

func newRecoverer(o *observer) (*recoverer, error) {
	return nil, errors.New("--recovery-cmd/--recovery-exec: recovery is not built yet")
}

func (r *recoverer) onStall(s *slot, now int64)     {}
func (r *recoverer) onSIGCHLD(now int64)            {}
func (r *recoverer) owns(fd int) bool               { return false }
func (r *recoverer) handle(ev pollEvent, now int64) {}
func (r *recoverer) nextDeadline() int64            { return 0 }
func (r *recoverer) fire(now int64)                 {}
func (r *recoverer) shutdown(graceNs int64)         {}
