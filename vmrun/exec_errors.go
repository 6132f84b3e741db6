package vmrun

import "errors"

var (
	// ErrLibvirt wraps failures of libvirt calls (connection, domain start, destroy).
	ErrLibvirt = errors.New("libvirt")
	// ErrStorage wraps failures to create or delete a job's overlay volume.
	ErrStorage = errors.New("storage")
	// ErrBoot means the guest agent did not answer within the boot timeout.
	ErrBoot = errors.New("guest did not boot")
	// ErrAgent wraps failures of guest-agent commands after boot.
	ErrAgent = errors.New("guest agent")
	// ErrTimeout means the script ran past the job's timeout; its VM was destroyed.
	ErrTimeout = errors.New("job timed out")
)
