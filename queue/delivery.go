package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerOptions tune a runner's durable consumer.
type ConsumerOptions struct {
	// AckWait is how long a delivered job may go without an ack or progress ack before the server
	// hands it to another worker. Workers send progress acks every third of it.
	AckWait time.Duration
	// MaxDeliver bounds how often one job is delivered.
	MaxDeliver int
}

// Puller takes jobs of one runner, one at a time.
type Puller struct {
	q      *Queue
	runner string
	cons   jetstream.Consumer
}

// Puller creates or updates the runner's durable consumer, shared by every worker serving it.
func (q *Queue) Puller(ctx context.Context, runner string, o ConsumerOptions) (*Puller, error) {
	if !ValidRunnerName(runner) {
		return nil, fmt.Errorf("runner name %q must match [a-z0-9][a-z0-9_-]*", runner)
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Minute
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 5
	}
	cons, err := q.js.CreateOrUpdateConsumer(ctx, q.names.JobsStream(), jetstream.ConsumerConfig{
		Durable:       q.names.RunnerConsumer(runner),
		Description:   "jobs for runner " + runner,
		FilterSubject: q.names.JobSubject(runner),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
	})
	if err != nil {
		return nil, fmt.Errorf("set up consumer for runner %s: %w", runner, err)
	}
	return &Puller{q: q, runner: runner, cons: cons}, nil
}

// Delivery is one job handed to this worker. Exactly one of Finish or Release ends it.
type Delivery struct {
	Job Job
	// Attempt counts deliveries of this job, from 1.
	Attempt int
	msg     jetstream.Msg
	q       *Queue
	worker  string
	started time.Time

	mu sync.Mutex
	// redelivered holds later deliveries of this same job that arrived while it ran here (a
	// restarted server may redeliver a running job at once); acks cover them too.
	redelivered []jetstream.Msg
}

// Absorb takes a redelivery of the job this delivery is running on this worker, instead of
// running the job twice: progress acks and the final ack or nak cover it too.
func (d *Delivery) Absorb(newer *Delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.redelivered = append(d.redelivered, newer.msg)
}

// each applies an ack call to this delivery and every absorbed redelivery; the first error
// (of this delivery's own message) counts.
func (d *Delivery) each(call func(jetstream.Msg) error) error {
	d.mu.Lock()
	extra := slices.Clone(d.redelivered)
	d.mu.Unlock()
	err := call(d.msg)
	for _, m := range extra {
		_ = call(m)
	}
	return err
}

// Next pulls exactly one job, waiting until ctx ends. Call it only with a free slot: the job is
// this worker's until it is finished or released. A message that is not a valid job is answered
// with an error result (when its id can be read) and terminated; Next then returns an error
// wrapping ErrInvalidJob and the caller goes on pulling.
func (p *Puller) Next(ctx context.Context) (*Delivery, error) {
	msg, err := p.cons.Next(jetstream.FetchContext(ctx))
	if err != nil {
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, ErrNoJob
		}
		return nil, fmt.Errorf("pull job for runner %s: %w", p.runner, err)
	}
	attempt := 1
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	job, err := DecodeJob(msg.Data())
	if err == nil && job.Runner != p.runner {
		err = fmt.Errorf("%w: runner %q published on the subject of runner %q", ErrInvalidJob, job.Runner, p.runner)
	}
	if err != nil {
		job.Runner = p.runner // the queue it came from, whatever the message says
		return nil, p.q.reject(ctx, msg, job, attempt, err)
	}
	return &Delivery{Job: job, Attempt: attempt, msg: msg, q: p.q}, nil
}

// reject ends a message that cannot run: a terminal error result when the job id is known, then
// Term so it is never redelivered.
func (q *Queue) reject(ctx context.Context, msg jetstream.Msg, job Job, attempt int, cause error) error {
	ctx = context.WithoutCancel(ctx)
	if job.ID != "" && validID(job.ID) {
		d := &Delivery{Job: job, Attempt: attempt, msg: msg, q: q}
		res := Result{State: StateError, Error: cause.Error()}
		if err := d.store(ctx, res); err != nil {
			return errors.Join(cause, err)
		}
	}
	if err := msg.TermWithReason(cause.Error()); err != nil {
		return errors.Join(cause, fmt.Errorf("terminate message: %w", err))
	}
	return cause
}

// Start claims the job for worker with a compare-and-set on its status entry, recording this
// delivery as the current attempt. The job must not run when Start returns an error:
//   - ErrCancelled: it was cancelled before it started; Start stored its cancelled result and
//     acknowledged it;
//   - ErrFinished: it already has its result (cancelled while queued, or an earlier attempt
//     finished); Start acknowledged it, and stored the result again if it was lost;
//   - ErrSuperseded: a newer delivery of it runs elsewhere; this one is dropped without an ack.
func (d *Delivery) Start(ctx context.Context, worker string) error {
	d.worker = worker
	d.started = time.Now().UTC()
	st, err := updateStatus(ctx, d.q.status, d.Job.ID, func(st *Status) error {
		if err := d.fence(st); err != nil {
			return err
		}
		if st.CancelRequested {
			return ErrCancelled
		}
		st.Runner, st.State, st.Worker, st.Attempt = d.Job.Runner, StateRunning, worker, d.Attempt
		st.SubmittedAt, st.StartedAt = d.Job.SubmittedAt, d.started
		st.Error = ""
		st.addPhase(PhaseStarted, d.started)
		return nil
	})
	switch {
	case errors.Is(err, ErrFinished):
		// The attempt that finished may have died between its status and its result.
		if _, rerr := d.q.Result(ctx, d.Job.ID); errors.Is(rerr, ErrNotFound) {
			if perr := d.q.publishResult(ctx, resultFromStatus(st)); perr != nil {
				return errors.Join(err, perr)
			}
		}
		if aerr := d.msg.DoubleAck(ctx); aerr != nil {
			return errors.Join(err, fmt.Errorf("ack finished job: %w", aerr))
		}
		return fmt.Errorf("%w: job %s is %s", ErrFinished, d.Job.ID, st.State)
	case errors.Is(err, ErrCancelled):
		if ferr := d.Finish(ctx, Result{State: StateCancelled, Error: "cancelled before it started"}); ferr != nil {
			return errors.Join(err, ferr)
		}
		return err
	}
	return err
}

// fence refuses to change a status entry that a newer attempt owns or that is already final.
func (d *Delivery) fence(st *Status) error {
	if st.State.Terminal() {
		return ErrFinished
	}
	if st.Attempt > d.Attempt {
		return fmt.Errorf("%w: attempt %d runs, this is attempt %d", ErrSuperseded, st.Attempt, d.Attempt)
	}
	return nil
}

// Phase records that the job entered a phase (PhaseBooting, PhaseRunning, PhaseCollecting).
func (d *Delivery) Phase(ctx context.Context, name string) error {
	_, err := updateStatus(ctx, d.q.status, d.Job.ID, func(st *Status) error {
		if st.State.Terminal() {
			return errStopUpdate
		}
		st.addPhase(name, time.Now().UTC())
		return nil
	})
	if errors.Is(err, errStopUpdate) {
		return nil
	}
	return err
}

// InProgress tells the server the job is still being worked on, resetting its ack timer.
func (d *Delivery) InProgress() error { return d.each(jetstream.Msg.InProgress) }

// Finish stores the job's result and status, then acknowledges the job. The ack comes last, so
// a job whose result was not stored is redelivered rather than lost. An attempt that a newer
// one superseded gets ErrSuperseded and must not ack: its late ack would end the newer
// attempt's delivery.
func (d *Delivery) Finish(ctx context.Context, res Result) error {
	err := d.store(ctx, res)
	switch {
	case errors.Is(err, ErrSuperseded):
		return err
	case errors.Is(err, ErrFinished):
		// Someone else gave the job its result (a cancel while queued, the max-deliveries
		// handler); this delivery is done too.
		if aerr := d.ack(ctx); aerr != nil {
			return errors.Join(err, fmt.Errorf("ack job %s: %w", d.Job.ID, aerr))
		}
		return err
	case err != nil:
		return err
	}
	if err := d.ack(ctx); err != nil {
		return fmt.Errorf("ack job %s: %w", d.Job.ID, err)
	}
	return nil
}

func (d *Delivery) ack(ctx context.Context) error {
	return d.each(func(m jetstream.Msg) error { return m.DoubleAck(ctx) })
}

// Retry hands the job back for another attempt after delay, recording why in its status. It
// returns ErrSuperseded or ErrFinished (and does not hand back) when the job is no longer this
// attempt's.
func (d *Delivery) Retry(ctx context.Context, delay time.Duration, reason error) error {
	_, err := updateStatus(ctx, d.q.status, d.Job.ID, func(st *Status) error {
		if err := d.fence(st); err != nil {
			return err
		}
		st.State = StateQueued
		st.Error = fmt.Sprintf("attempt %d failed: %v; retrying in %s", d.Attempt, reason, delay)
		st.addPhase(PhaseRetrying, time.Now().UTC())
		return nil
	})
	if err != nil {
		return err
	}
	return d.Release(delay)
}

// Release hands the job back for another delivery after delay, without a result.
func (d *Delivery) Release(delay time.Duration) error {
	return d.each(func(m jetstream.Msg) error { return m.NakWithDelay(delay) })
}

// store records the result: first the terminal state in the status entry, by compare-and-set,
// so that only the current attempt can end the job; then the result message.
func (d *Delivery) store(ctx context.Context, res Result) error {
	res.Format = ResultFormat
	res.JobID = d.Job.ID
	res.Runner = d.Job.Runner
	res.Worker = d.worker
	res.Attempt = d.Attempt
	res.StartedAt = d.started
	if res.FinishedAt.IsZero() {
		res.FinishedAt = time.Now().UTC()
	}
	_, err := updateStatus(ctx, d.q.status, d.Job.ID, func(st *Status) error {
		if err := d.fence(st); err != nil {
			return err
		}
		st.Runner, st.State, st.Worker, st.Attempt = d.Job.Runner, res.State, d.worker, d.Attempt
		st.ExitCode, st.Error, st.FinishedAt = res.ExitCode, res.Error, res.FinishedAt
		if st.SubmittedAt.IsZero() {
			st.SubmittedAt = d.Job.SubmittedAt
		}
		if !d.started.IsZero() {
			st.StartedAt = d.started
		}
		st.addPhase(string(res.State), res.FinishedAt)
		return nil
	})
	if err != nil {
		return err
	}
	return d.q.publishResult(ctx, res)
}

// publishResult stores a job's one result. Its message id is the same for every attempt, so a
// repeated publish within the duplicate window is dropped.
func (q *Queue) publishResult(ctx context.Context, res Result) error {
	res.Format = ResultFormat
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	msg := nats.NewMsg(q.names.ResultSubject(res.JobID))
	msg.Data = data
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(res.JobID+"/result"), jetstream.WithExpectStream(q.names.ResultsStream())); err != nil {
		return fmt.Errorf("store result of %s: %w", res.JobID, err)
	}
	return nil
}

// resultFromStatus rebuilds a result from a final status entry, for a result that was lost
// between the two writes. Output counts and artifacts are not in the status and stay empty.
func resultFromStatus(st Status) Result {
	return Result{
		JobID: st.JobID, Runner: st.Runner, State: st.State, ExitCode: st.ExitCode, Error: st.Error,
		Worker: st.Worker, Attempt: st.Attempt, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
	}
}

// MaxLogChunk bounds one output message.
const MaxLogChunk = 64 << 10

// LogWriter publishes a job's output as ordered chunks on its logs subject. Each Write is
// published before it returns. It is not safe for concurrent use.
type LogWriter struct {
	ctx     context.Context
	js      jetstream.JetStream
	subject string
	stream  string
	attempt string
	chunks  int
	bytes   int64
}

// AttemptHeader marks each output chunk with the attempt that wrote it: a retried job's logs
// subject holds its earlier attempts' output too, and a result's log_chunks counts only its own
// attempt's chunks.
const AttemptHeader = "Smallscale-Attempt"

// Logs returns the writer for the job's output. ctx bounds every publish.
func (d *Delivery) Logs(ctx context.Context) *LogWriter {
	return &LogWriter{ctx: ctx, js: d.q.js, subject: d.q.names.LogSubject(d.Job.ID), stream: d.q.names.LogsStream(),
		attempt: strconv.Itoa(d.Attempt)}
}

func (w *LogWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), MaxLogChunk)]
		msg := nats.NewMsg(w.subject)
		msg.Data = c
		msg.Header.Set(AttemptHeader, w.attempt)
		if _, err := w.js.PublishMsg(w.ctx, msg, jetstream.WithExpectStream(w.stream)); err != nil {
			return n, fmt.Errorf("publish output: %w", err)
		}
		w.chunks++
		w.bytes += int64(len(c))
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

// Chunks and Bytes describe what was published, for the result.
func (w *LogWriter) Chunks() int  { return w.chunks }
func (w *LogWriter) Bytes() int64 { return w.bytes }
