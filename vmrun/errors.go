package vmrun

import "errors"

// Sentinels of package vmrun. Errors returned by this package wrap one of them, so callers
// decide with errors.Is and show err.Error(), which says what was wrong and what to do.
var (
	// ErrInvalidRunner: a runner definition (vm.xml, volume.xml, runner.json or the folder
	// name) cannot be used. Fix the runner; retrying does not help.
	ErrInvalidRunner = errors.New("invalid runner")

	// ErrBaseImage: the base image named by volume.xml is missing or unreadable on this host.
	// Always wrapped together with ErrInvalidRunner; kept apart because it is a host set-up
	// problem (a missing file, a permission) rather than a mistake in the XML.
	ErrBaseImage = errors.New("base image not usable")

	// ErrInvalidJobSpec: DomainXML or VolumeXML was called with a spec or name that cannot
	// produce a valid domain or volume (a caller bug, not a runner problem).
	ErrInvalidJobSpec = errors.New("invalid job spec")

	// ErrInvalidJobMark: a domain carries a smallscale job mark that cannot be read.
	ErrInvalidJobMark = errors.New("invalid smallscale job mark")

	// ErrLibvirt wraps failures of libvirt calls (connection, domain start, destroy).
	ErrLibvirt = errors.New("libvirt")
	// ErrStorage wraps failures to create or delete a job's overlay volume.
	ErrStorage = errors.New("storage")
	// ErrBoot means the guest agent did not answer within the boot timeout.
	ErrBoot = errors.New("guest did not boot")
	// ErrAgent wraps failures of guest-agent commands after boot.
	ErrAgent = errors.New("guest agent")
	// ErrTransfer means moving input files into the guest or artifacts out of it failed.
	ErrTransfer = errors.New("file transfer")
	// ErrTimeout means the script ran past the job's timeout; its VM was destroyed.
	ErrTimeout = errors.New("job timed out")
)
