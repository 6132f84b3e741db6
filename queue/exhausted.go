package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AnswerExhausted gives a terminal error result to every job that the server stopped
// delivering because its deliveries ran out (its workers died on each attempt), and removes the
// job's message, which a work queue would otherwise keep for ever (PITFALLS 6). The server's
// max-deliveries advisories are kept in a stream (see Setup), so none is lost while no worker
// listens, and every worker pulls from one durable consumer on it, so each is answered once.
// It runs until ctx ends; report hears of each job answered or failure.
func (q *Queue) AnswerExhausted(ctx context.Context, report func(jobID string, err error)) error {
	cons, err := q.js.CreateOrUpdateConsumer(ctx, q.names.ExhaustedStream(), jetstream.ConsumerConfig{
		Durable:     "answer-exhausted",
		Description: "workers answer jobs whose deliveries ran out",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     time.Minute,
	})
	if err != nil {
		return fmt.Errorf("watch exhausted jobs: %w", err)
	}
	for ctx.Err() == nil {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) {
				report("", fmt.Errorf("pull max-deliveries advisory: %w", err))
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		id, err := q.answerExhausted(actx, m.Data())
		cancel()
		if err != nil {
			_ = m.NakWithDelay(5 * time.Second)
		} else {
			_ = m.Ack()
		}
		if id != "" || err != nil {
			report(id, err)
		}
	}
	return nil
}

func (q *Queue) answerExhausted(ctx context.Context, advisory []byte) (string, error) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
	}
	if err := json.Unmarshal(advisory, &adv); err != nil {
		return "", fmt.Errorf("max-deliveries advisory: %w", err)
	}
	stream, err := q.js.Stream(ctx, q.names.JobsStream())
	if err != nil {
		return "", err
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil // another worker answered it
	}
	if err != nil {
		return "", fmt.Errorf("get exhausted job: %w", err)
	}
	job, _ := DecodeJob(raw.Data)
	if job.ID != "" {
		now := time.Now().UTC()
		st, err := updateStatus(ctx, q.status, job.ID, func(st *Status) error {
			if st.State.Terminal() {
				return ErrFinished
			}
			if st.Runner == "" {
				st.Runner = job.Runner
			}
			st.State, st.FinishedAt, st.ExitCode = StateError, now, nil
			st.Error = fmt.Sprintf("no attempt finished the job in %d deliveries (its workers were lost)", adv.Deliveries)
			st.addPhase(string(StateError), now)
			return nil
		})
		switch {
		case errors.Is(err, ErrFinished):
		case err != nil:
			return job.ID, err
		default:
			if err := q.publishResult(ctx, resultFromStatus(st)); err != nil {
				return job.ID, err
			}
		}
	}
	if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return job.ID, fmt.Errorf("remove exhausted job: %w", err)
	}
	return job.ID, nil
}
