package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Submit validates job, checks that some worker serves its runner, records it as queued and
// publishes it with its id as Nats-Msg-Id. Nothing is queued when it returns an error.
func (q *Queue) Submit(ctx context.Context, job Job) error {
	if err := job.Validate(); err != nil {
		return err
	}
	if err := q.CheckRunner(ctx, job.Runner); err != nil {
		return err
	}
	data, err := job.Encode()
	if err != nil {
		return err
	}
	// The status goes first, so that a worker always finds it.
	if _, err := updateStatus(ctx, q.status, job.ID, func(st *Status) error {
		if st.JobID != "" {
			return fmt.Errorf("%w: %s already has a status", ErrDuplicateJob, job.ID)
		}
		*st = Status{Runner: job.Runner, State: StateQueued, SubmittedAt: job.SubmittedAt}
		st.addPhase(string(StateQueued), job.SubmittedAt)
		return nil
	}); err != nil {
		return err
	}
	msg := nats.NewMsg(q.names.JobSubject(job.Runner))
	msg.Data = data
	ack, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(job.ID), jetstream.WithExpectStream(q.names.JobsStream()))
	if err != nil {
		_ = q.status.Delete(context.WithoutCancel(ctx), job.ID)
		return fmt.Errorf("publish job %s: %w", job.ID, err)
	}
	if ack.Duplicate {
		return fmt.Errorf("%w: %s was published before; a resubmission needs a new id", ErrDuplicateJob, job.ID)
	}
	return nil
}

// CheckRunner returns an error wrapping ErrNoSuchRunner when no worker has ever served the
// runner. Submit checks this too; a submitter with inputs to upload checks it first, so that a
// typo in the runner name does not cost the upload.
func (q *Queue) CheckRunner(ctx context.Context, runner string) error {
	if !ValidRunnerName(runner) {
		return fmt.Errorf("%w: runner name %q must match [a-z0-9][a-z0-9_-]* (at most %d characters)", ErrInvalidJob, runner, MaxRunnerNameLen)
	}
	if _, err := q.js.Consumer(ctx, q.names.JobsStream(), q.names.RunnerConsumer(runner)); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("%w: %q (no worker has registered it; `worker check` on a host lists its runners)", ErrNoSuchRunner, runner)
		}
		return fmt.Errorf("look up runner %s: %w", runner, err)
	}
	return nil
}

// Status returns the job's current status entry.
func (q *Queue) Status(ctx context.Context, jobID string) (Status, error) {
	return getStatus(ctx, q.status, jobID)
}

// Result returns the job's terminal result, or ErrNotFound while it has none.
func (q *Queue) Result(ctx context.Context, jobID string) (Result, error) {
	s, err := q.js.Stream(ctx, q.names.ResultsStream())
	if err != nil {
		return Result{}, fmt.Errorf("open results: %w", err)
	}
	m, err := s.GetLastMsgForSubject(ctx, q.names.ResultSubject(jobID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, fmt.Errorf("%w: no result for %s yet", ErrNotFound, jobID)
	}
	if err != nil {
		return Result{}, fmt.Errorf("get result of %s: %w", jobID, err)
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Result{}, fmt.Errorf("result of %s: %w", jobID, err)
	}
	return r, nil
}

// ErrLogIncomplete means the result arrived but some of the job's output did not (it expired
// from the logs stream, or was never stored).
var ErrLogIncomplete = errors.New("job output incomplete")

// logDrainTimeout bounds the wait for output chunks a result announces but that do not arrive.
const logDrainTimeout = 10 * time.Second

// Follow writes the job's output to out from its first byte, as it is produced, and returns the
// job's result once the result and all the output it announces have arrived. It works the same
// for a running job and for one that ended long ago.
func (q *Queue) Follow(ctx context.Context, jobID string, out io.Writer) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	logCons, err := q.js.OrderedConsumer(ctx, q.names.LogsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{q.names.LogSubject(jobID)},
	})
	if err != nil {
		return Result{}, fmt.Errorf("follow output of %s: %w", jobID, err)
	}
	chunks := make(chan jetstream.Msg, 64)
	cc, err := logCons.Consume(func(m jetstream.Msg) {
		select {
		case chunks <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return Result{}, fmt.Errorf("follow output of %s: %w", jobID, err)
	}
	defer cc.Stop()

	resCons, err := q.js.OrderedConsumer(ctx, q.names.ResultsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{q.names.ResultSubject(jobID)},
	})
	if err != nil {
		return Result{}, fmt.Errorf("follow result of %s: %w", jobID, err)
	}
	results := make(chan Result, 1)
	resErr := make(chan error, 1)
	go func() {
		for {
			m, err := resCons.Next(jetstream.FetchContext(ctx))
			if errors.Is(err, nats.ErrTimeout) {
				continue
			}
			if err != nil {
				resErr <- err
				return
			}
			var r Result
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				resErr <- fmt.Errorf("result of %s: %w", jobID, err)
				return
			}
			results <- r
			return
		}
	}()

	// Every chunk is written, a retried job's earlier attempts included; the result's count
	// covers the chunks of its own attempt.
	var (
		res       *Result
		got       = map[string]int{}
		drain     <-chan time.Time
		ownChunks = func() int { return got[strconv.Itoa(res.Attempt)] }
	)
	for res == nil || ownChunks() < res.LogChunks {
		select {
		case m := <-chunks:
			got[m.Headers().Get(AttemptHeader)]++
			if _, err := out.Write(m.Data()); err != nil {
				return Result{}, fmt.Errorf("write output: %w", err)
			}
			if res != nil {
				drain = time.After(logDrainTimeout)
			}
		case r := <-results:
			res = &r
			drain = time.After(logDrainTimeout)
		case err := <-resErr:
			if ctx.Err() != nil {
				return Result{}, ctx.Err()
			}
			return Result{}, err
		case <-drain:
			return *res, fmt.Errorf("%w: %d of %d chunks arrived", ErrLogIncomplete, ownChunks(), res.LogChunks)
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	return *res, nil
}
