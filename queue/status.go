package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is a job's entry in the status bucket, updated at each step of its life. Every
// update is a compare-and-set on the entry's revision, so a cancel request set by a submitter
// is never overwritten by a worker's progress.
type Status struct {
	JobID    string `json:"job_id"`
	Runner   string `json:"runner"`
	State    State  `json:"state"`
	Worker   string `json:"worker,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	// CancelRequested is set by a cancel; the worker running the job (or the next to pick it
	// up) ends it as cancelled.
	CancelRequested bool      `json:"cancel_requested,omitempty"`
	SubmittedAt     time.Time `json:"submitted_at,omitzero"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	FinishedAt      time.Time `json:"finished_at,omitzero"`
	UpdatedAt       time.Time `json:"updated_at"`
	// Phases is the job's timeline: queued, started, booting, running, collecting, then the
	// terminal state.
	Phases []Phase `json:"phases,omitempty"`
}

// Phase is one step of a job's timeline.
type Phase struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// Phase names beyond the states.
const (
	PhaseStarted    = "started"    // a worker took the job
	PhaseBooting    = "booting"    // its VM is starting
	PhaseRunning    = "running"    // the script runs
	PhaseCollecting = "collecting" // artifacts are being collected
	PhaseRetrying   = "retrying"   // an attempt failed for an infrastructure reason; the job waits for the next
)

func (s *Status) addPhase(name string, at time.Time) {
	s.Phases = append(s.Phases, Phase{Name: name, At: at})
}

// errStopUpdate ends an update without writing.
var errStopUpdate = errors.New("no update")

// updateStatus applies change to the job's entry with compare-and-set, retrying when someone
// else wrote in between. A change returning errStopUpdate leaves the entry as it is.
func updateStatus(ctx context.Context, kv jetstream.KeyValue, jobID string, change func(*Status) error) (Status, error) {
	for {
		var (
			st  Status
			rev uint64
		)
		e, err := kv.Get(ctx, jobID)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return Status{}, fmt.Errorf("get status of %s: %w", jobID, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return Status{}, fmt.Errorf("status of %s: %w", jobID, err)
			}
		}
		if err := change(&st); err != nil {
			return st, err
		}
		st.JobID = jobID
		st.UpdatedAt = time.Now().UTC()
		data, err := json.Marshal(st)
		if err != nil {
			return Status{}, err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, jobID, data)
		} else {
			_, err = kv.Update(ctx, jobID, data, rev)
		}
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return Status{}, fmt.Errorf("update status of %s: %w", jobID, err)
		}
		if ctx.Err() != nil {
			return Status{}, ctx.Err()
		}
	}
}

func getStatus(ctx context.Context, kv jetstream.KeyValue, jobID string) (Status, error) {
	e, err := kv.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Status{}, fmt.Errorf("%w: %s", ErrNotFound, jobID)
	}
	if err != nil {
		return Status{}, fmt.Errorf("get status of %s: %w", jobID, err)
	}
	var st Status
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return Status{}, fmt.Errorf("status of %s: %w", jobID, err)
	}
	return st, nil
}
