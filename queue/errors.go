package queue

import "errors"

var (
	// ErrInvalidJob wraps every reason a job is refused before it is queued or run.
	ErrInvalidJob = errors.New("invalid job")
	// ErrNoSuchRunner means no worker has ever served the runner: nothing would pull the job.
	ErrNoSuchRunner = errors.New("no such runner")
	// ErrDuplicateJob means a job with this id was already published within the duplicate window.
	ErrDuplicateJob = errors.New("duplicate job id")
	// ErrNoJob means no job arrived before the pull's deadline.
	ErrNoJob = errors.New("no job available")
	// ErrNotSetUp means the streams do not exist: no worker has set up this NATS server yet.
	ErrNotSetUp = errors.New("smallscale is not set up on this NATS server")
	// ErrCancelled means the job was cancelled; it must not run (any more).
	ErrCancelled = errors.New("job cancelled")
	// ErrFinished means the job already has its terminal result.
	ErrFinished = errors.New("job already finished")
	// ErrSuperseded means a newer delivery of the job owns it; the older one must not run it,
	// store a result or ack.
	ErrSuperseded = errors.New("job superseded by a newer attempt")
	// ErrNotFound means the job id is unknown (or its records have expired).
	ErrNotFound = errors.New("job not found")
)
