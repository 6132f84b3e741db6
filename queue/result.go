package queue

import "time"

// ResultFormat is the version of the result message format.
const ResultFormat = 1

// State is where a job stands. The terminal states end a job; each job gets one result.
type State string

const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded" // the script exited 0
	StateFailed    State = "failed"    // the script exited non-zero
	StateTimedOut  State = "timed_out" // the script ran past its timeout; its VM was destroyed
	StateCancelled State = "cancelled"
	StateError     State = "error" // smallscale could not run the script (VM, agent, libvirt, bad job)
)

// Terminal reports whether s ends a job.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateTimedOut, StateCancelled, StateError:
		return true
	}
	return false
}

// Result is the one terminal record of a job, on its results subject.
type Result struct {
	Format int    `json:"format"`
	JobID  string `json:"job_id"`
	Runner string `json:"runner"`
	State  State  `json:"state"`
	// ExitCode is the script's exit status; absent when the script did not finish on its own.
	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	Worker   string `json:"worker,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
	// LogChunks and LogBytes describe the complete output on the logs subject, so a follower
	// knows when it has all of it.
	// Artifacts lists what the job left in its output directory, each stored in the artifacts
	// bucket under its Object name.
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Refused names what was not taken from the job's output directory (an unsafe name, a link
	// pointing outside it, a special file) and why.
	Refused    []Refused `json:"refused,omitempty"`
	LogChunks  int       `json:"log_chunks"`
	LogBytes   int64     `json:"log_bytes"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at"`
	Timings    Timings   `json:"timings"`
}

// Timings splits a job's time on the worker into its phases, in milliseconds.
type Timings struct {
	// Prepare: overlay and domain XML until the domain is started.
	PrepareMS int64 `json:"prepare_ms"`
	// Boot: domain started until the guest agent answered.
	BootMS int64 `json:"boot_ms"`
	// Run: script written until its exit status and all its output arrived.
	RunMS int64 `json:"run_ms"`
	// Inputs and Collect: moving input files in and artifacts out.
	InputsMS  int64 `json:"inputs_ms,omitempty"`
	CollectMS int64 `json:"collect_ms,omitempty"`
	// Teardown: domain destroyed and overlay deleted.
	TeardownMS int64 `json:"teardown_ms"`
}
