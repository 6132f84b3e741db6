package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Cancel asks for the job to end as cancelled. A queued job is answered at once with a
// cancelled result and never starts; a running job's worker destroys its VM within seconds.
// The request is kept in the job's status entry, so a worker that picks the job up later sees
// it too. Cancelling a finished job returns ErrFinished.
func (q *Queue) Cancel(ctx context.Context, jobID string) (Status, error) {
	now := time.Now().UTC()
	st, err := updateStatus(ctx, q.status, jobID, func(st *Status) error {
		if st.JobID == "" {
			return fmt.Errorf("%w: %s", ErrNotFound, jobID)
		}
		if st.State.Terminal() {
			return fmt.Errorf("%w: %s is %s", ErrFinished, jobID, st.State)
		}
		st.CancelRequested = true
		if st.State == StateQueued {
			st.State, st.FinishedAt, st.Error = StateCancelled, now, "cancelled while queued"
			st.addPhase(string(StateCancelled), now)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if st.State == StateCancelled {
		// Nobody runs the job: the canceller answers it. A worker that pulls it later finds it
		// finished and drops it.
		if err := q.publishResult(ctx, resultFromStatus(st)); err != nil {
			return st, err
		}
	}
	// Tell a running worker at once; the status entry is the durable record.
	_ = q.js.Conn().Publish(q.names.CancelSubject(jobID), nil)
	return st, nil
}

// CancelWatch reports a cancel request for the delivered job: closed when one arrives, by the
// status entry or the cancel subject. It stops when ctx ends.
func (d *Delivery) CancelWatch(ctx context.Context) (<-chan struct{}, error) {
	cancelled := make(chan struct{})
	var once bool
	fire := func() {
		if !once {
			once = true
			close(cancelled)
		}
	}
	sub, err := d.q.js.Conn().SubscribeSync(d.q.names.CancelSubject(d.Job.ID))
	if err != nil {
		return nil, fmt.Errorf("watch cancel of %s: %w", d.Job.ID, err)
	}
	w, err := d.q.status.Watch(ctx, d.Job.ID) // the current value first: a cancel just after Start counts too
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("watch cancel of %s: %w", d.Job.ID, err)
	}
	subMsgs := make(chan struct{}, 1)
	go func() {
		for {
			if _, err := sub.NextMsgWithContext(ctx); err != nil {
				if ctx.Err() != nil || errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConnectionClosed) {
					return
				}
				continue
			}
			select {
			case subMsgs <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		defer w.Stop()
		defer sub.Unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case <-subMsgs:
				fire()
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				var st Status
				if json.Unmarshal(e.Value(), &st) == nil && st.CancelRequested {
					fire()
				}
			}
		}
	}()
	return cancelled, nil
}
