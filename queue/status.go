package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is a job's entry in the status bucket, updated at each step of its life.
type Status struct {
	JobID       string    `json:"job_id"`
	Runner      string    `json:"runner"`
	State       State     `json:"state"`
	Worker      string    `json:"worker,omitempty"`
	Attempt     int       `json:"attempt,omitempty"`
	ExitCode    *int      `json:"exit_code,omitempty"`
	Error       string    `json:"error,omitempty"`
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func putStatus(ctx context.Context, kv jetstream.KeyValue, st Status) error {
	st.UpdatedAt = time.Now().UTC()
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, st.JobID, data); err != nil {
		return fmt.Errorf("put status of %s: %w", st.JobID, err)
	}
	return nil
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
