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

// Start records that worker runs the job.
func (d *Delivery) Start(ctx context.Context, worker string) error {
	d.worker = worker
	d.started = time.Now().UTC()
	return putStatus(ctx, d.q.status, Status{
		JobID: d.Job.ID, Runner: d.Job.Runner, State: StateRunning, Worker: worker,
		Attempt: d.Attempt, SubmittedAt: d.Job.SubmittedAt, StartedAt: d.started,
	})
}

// InProgress tells the server the job is still being worked on, resetting its ack timer.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Finish stores the job's result and status, then acknowledges the job. The ack comes last, so
// a job whose result was not stored is redelivered rather than lost.
func (d *Delivery) Finish(ctx context.Context, res Result) error {
	if err := d.store(ctx, res); err != nil {
		return err
	}
	if err := d.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack job %s: %w", d.Job.ID, err)
	}
	return nil
}

// Release hands the job back for another delivery after delay, without a result.
func (d *Delivery) Release(delay time.Duration) error {
	return d.msg.NakWithDelay(delay)
}

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
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	msg := nats.NewMsg(d.q.names.ResultSubject(d.Job.ID))
	msg.Data = data
	msgID := fmt.Sprintf("%s/result/%d", d.Job.ID, d.Attempt)
	if _, err := d.q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(d.q.names.ResultsStream())); err != nil {
		return fmt.Errorf("store result of %s: %w", d.Job.ID, err)
	}
	return putStatus(ctx, d.q.status, Status{
		JobID: d.Job.ID, Runner: d.Job.Runner, State: res.State, Worker: d.worker, Attempt: d.Attempt,
		ExitCode: res.ExitCode, Error: res.Error, SubmittedAt: d.Job.SubmittedAt,
		StartedAt: d.started, FinishedAt: res.FinishedAt,
	})
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
	chunks  int
	bytes   int64
}

// Logs returns the writer for the job's output. ctx bounds every publish.
func (d *Delivery) Logs(ctx context.Context) *LogWriter {
	return &LogWriter{ctx: ctx, js: d.q.js, subject: d.q.names.LogSubject(d.Job.ID), stream: d.q.names.LogsStream()}
}

func (w *LogWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), MaxLogChunk)]
		if _, err := w.js.Publish(w.ctx, w.subject, c, jetstream.WithExpectStream(w.stream)); err != nil {
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
