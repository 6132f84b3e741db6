package worker

import (
	"errors"
	"time"

	"github.com/smallscale-ci/smallscale/vmrun"
)

// Retry back-off: the first retry waits retryBase, each next one twice as long, at most retryMax.
const (
	retryBase = 5 * time.Second
	retryMax  = 2 * time.Minute
)

// retryable reports whether err is the host's fault rather than the job's: the VM would not
// boot, the guest agent failed, libvirt or storage failed. A script's own exit status, its
// timeout, a cancel, refused inputs or artifacts over their limit are never retried.
func retryable(err error) bool {
	if err == nil || errors.Is(err, vmrun.ErrTimeout) {
		return false
	}
	return errors.Is(err, vmrun.ErrBoot) || errors.Is(err, vmrun.ErrAgent) ||
		errors.Is(err, vmrun.ErrLibvirt) || errors.Is(err, vmrun.ErrStorage)
}

// retryDelay says whether attempt (counted from 1) failing with err gets another attempt, and
// after how long. The last of maxAttempts never does: it ends with a terminal error instead.
func retryDelay(err error, attempt, maxAttempts int) (time.Duration, bool) {
	if !retryable(err) || attempt >= maxAttempts {
		return 0, false
	}
	d := retryBase
	for range attempt - 1 {
		d *= 2
		if d >= retryMax {
			return retryMax, true
		}
	}
	return d, true
}
