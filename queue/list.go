package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ListFilter narrows List. Zero fields match everything; Limit 0 means 20.
type ListFilter struct {
	Runner string
	State  State
	Limit  int
}

// List returns the newest jobs' statuses first (job ids are time-ordered).
func (q *Queue) List(ctx context.Context, f ListFilter) ([]Status, error) {
	if f.Limit <= 0 {
		f.Limit = 20
	}
	lister, err := q.status.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	var keys []string
	for k := range lister.Keys() { // closed once every key was listed (the lister then stops itself), or when ctx ends
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	slices.SortFunc(keys, func(a, b string) int { return strings.Compare(b, a) })
	var out []Status
	for _, k := range keys {
		if len(out) == f.Limit {
			break
		}
		st, err := getStatus(ctx, q.status, k)
		if errors.Is(err, ErrNotFound) {
			continue // deleted or expired since the listing
		}
		if err != nil {
			return nil, err
		}
		if (f.Runner == "" || st.Runner == f.Runner) && (f.State == "" || st.State == f.State) {
			out = append(out, st)
		}
	}
	return out, nil
}

// Logs writes the output the job has produced so far to out and returns. Follow waits for the
// rest.
func (q *Queue) Logs(ctx context.Context, jobID string, out io.Writer) error {
	s, err := q.js.Stream(ctx, q.names.LogsStream())
	if err != nil {
		return fmt.Errorf("open logs: %w", err)
	}
	last, err := s.GetLastMsgForSubject(ctx, q.names.LogSubject(jobID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // no output yet
	}
	if err != nil {
		return fmt.Errorf("logs of %s: %w", jobID, err)
	}
	cons, err := q.js.OrderedConsumer(ctx, q.names.LogsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{q.names.LogSubject(jobID)},
	})
	if err != nil {
		return fmt.Errorf("logs of %s: %w", jobID, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("logs of %s: %w", jobID, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("logs of %s: %w", jobID, err)
		}
		if _, err := out.Write(m.Data()); err != nil {
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if md.Sequence.Stream >= last.Sequence {
			return nil
		}
	}
}
