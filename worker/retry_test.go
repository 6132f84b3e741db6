package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smallscale-ci/smallscale/files"
	"github.com/smallscale-ci/smallscale/vmrun"
)

func TestRetryDelay(t *testing.T) {
	boot := fmt.Errorf("%w within 2m", vmrun.ErrBoot)
	tests := []struct {
		name        string
		err         error
		attempt     int
		wantRetry   bool
		wantAtLeast time.Duration
	}{
		{"boot failure, first attempt", boot, 1, true, 5 * time.Second},
		{"boot failure, second attempt", boot, 2, true, 10 * time.Second},
		{"boot failure, last attempt", boot, 3, false, 0},
		{"libvirt", fmt.Errorf("%w: start domain", vmrun.ErrLibvirt), 1, true, 5 * time.Second},
		{"storage full", fmt.Errorf("%w: create overlay: no space", vmrun.ErrStorage), 2, true, 10 * time.Second},
		{"agent", fmt.Errorf("%w: guest-exec", vmrun.ErrAgent), 1, true, 5 * time.Second},
		{"script timeout", fmt.Errorf("%w after 3s", vmrun.ErrTimeout), 1, false, 0},
		{"cancel", context.Canceled, 1, false, 0},
		{"output command failed", fmt.Errorf("%w: exit 1", vmrun.ErrTransfer), 1, false, 0},
		{"refused inputs", fmt.Errorf("inputs refused: %w", files.ErrUnsafePath), 1, false, 0},
		{"artifacts too large", fmt.Errorf("%w: at big.bin", files.ErrTooLarge), 1, false, 0},
		{"no error", nil, 1, false, 0},
		{"other error", errors.New("something"), 1, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, retry := retryDelay(tt.err, tt.attempt, 3)
			if retry != tt.wantRetry || d < tt.wantAtLeast {
				t.Fatalf("retryDelay = %s, %v; want retry=%v after at least %s", d, retry, tt.wantRetry, tt.wantAtLeast)
			}
		})
	}
	if d, _ := retryDelay(boot, 20, 100); d != retryMax {
		t.Fatalf("delay of attempt 20 = %s, want the cap %s", d, retryMax)
	}
}
