//go:build !linux

package loadgen

import (
	"fmt"
	"os"
)

// Children are sleeping child processes; only Linux lets a sender attach
// another pid's credentials, so elsewhere there are none.
type Children struct{ Pids []uint32 }

// SpawnChildren is Linux-only.
func SpawnChildren(n int) (*Children, error) {
	return nil, fmt.Errorf("loadgen: kernel-attested senders need Linux SCM_CREDENTIALS: %w", os.ErrNotExist)
}

// Close does nothing.
func (c *Children) Close() {}
