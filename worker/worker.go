// Package worker joins the queue and the VMs: it pulls a job only when it has a free slot, runs
// it through an Executor, and stores the result before it acknowledges the job.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/smallscale-ci/smallscale/queue"
	"github.com/smallscale-ci/smallscale/vmrun"
)

// Executor runs one job in a fresh VM. vmrun.Executor is the real one.
type Executor interface {
	Run(ctx context.Context, r *vmrun.Runner, job vmrun.Job, out io.Writer) (vmrun.Outcome, error)
}

var _ Executor = (*vmrun.Executor)(nil)

// Config is the worker's part of the daemon's configuration.
type Config struct {
	Name           string
	Concurrency    int           // jobs at once on this host
	DefaultTimeout time.Duration // for jobs that set none
	// MaxInputBytes and MaxArtifactBytes bound the files a job moves in and out (0: no limit).
	MaxInputBytes    int64
	MaxArtifactBytes int64
	Consumer         queue.ConsumerOptions
}

// Worker serves a set of runners from one queue.
type Worker struct {
	cfg     Config
	q       *queue.Queue
	exec    Executor
	runners map[string]*vmrun.Runner
	log     *slog.Logger
	slots   chan struct{}

	mu      sync.Mutex
	running map[string]*queue.Delivery // by job id
}

// New returns a worker; Run starts it.
func New(cfg Config, q *queue.Queue, exec Executor, runners map[string]*vmrun.Runner, log *slog.Logger) (*Worker, error) {
	if cfg.Concurrency <= 0 {
		return nil, fmt.Errorf("concurrency must be at least 1, is %d", cfg.Concurrency)
	}
	if len(runners) == 0 {
		return nil, errors.New("no runners to serve")
	}
	return &Worker{
		cfg: cfg, q: q, exec: exec, runners: runners, log: log,
		slots:   make(chan struct{}, cfg.Concurrency),
		running: make(map[string]*queue.Delivery),
	}, nil
}

// pullWait bounds one pull request, so that a lost pull is renewed (PITFALLS 8) and a stop is
// noticed promptly.
const pullWait = 5 * time.Second

// finishTimeout bounds storing a result and acknowledging the job.
const finishTimeout = 30 * time.Second

// Run takes jobs until ctx ends, then waits for the running jobs to finish. Running jobs live
// on jobCtx: when it ends they are stopped and handed back to the queue for redelivery.
func (w *Worker) Run(ctx, jobCtx context.Context) error {
	pullers := make(map[string]*queue.Puller, len(w.runners))
	for name := range w.runners {
		p, err := w.q.Puller(ctx, name, w.cfg.Consumer)
		if err != nil {
			return err
		}
		pullers[name] = p
	}
	var (
		loops sync.WaitGroup
		jobs  sync.WaitGroup
	)
	loops.Go(func() {
		err := w.q.AnswerExhausted(ctx, func(id string, err error) {
			if err != nil {
				w.log.Error("could not answer a job whose deliveries ran out", "job_id", id, "err", err)
				return
			}
			w.log.Warn("job's deliveries ran out; answered with an error result", "job_id", id)
		})
		if err != nil {
			w.log.Error("jobs whose deliveries run out will not be answered by this worker", "err", err)
		}
	})
	for name, p := range pullers {
		loops.Go(func() { w.pullLoop(ctx, jobCtx, w.runners[name], p, &jobs) })
	}
	w.log.Info("worker ready", "runners", len(pullers), "slots", w.cfg.Concurrency)
	loops.Wait()
	w.log.Info("stopped taking jobs; waiting for running jobs", "running", len(w.slots))
	jobs.Wait()
	return nil
}

func (w *Worker) pullLoop(ctx, jobCtx context.Context, r *vmrun.Runner, p *queue.Puller, jobs *sync.WaitGroup) {
	log := w.log.With("runner", r.Name)
	for {
		// A slot first, then exactly one message: a host never holds jobs it cannot start.
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		pullCtx, cancel := context.WithTimeout(ctx, pullWait)
		d, err := p.Next(pullCtx)
		cancel()
		if err != nil {
			<-w.slots
			switch {
			case errors.Is(err, queue.ErrNoJob):
			case errors.Is(err, queue.ErrInvalidJob):
				log.Warn("refused a job message", "err", err)
			default:
				log.Error("pull failed; retrying", "err", err)
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if !w.claim(d) {
			// The server handed us a job this worker is running already (it may do so at once
			// after a restart): the running attempt takes over the new delivery.
			<-w.slots
			log.Warn("job redelivered while it runs here; the running attempt keeps it", "job_id", d.Job.ID, "attempt", d.Attempt)
			continue
		}
		jobs.Go(func() {
			defer func() { w.release(d); <-w.slots }()
			w.runJob(jobCtx, r, d)
		})
	}
}

func (w *Worker) runJob(ctx context.Context, r *vmrun.Runner, d *queue.Delivery) {
	log := w.log.With("job_id", d.Job.ID, "runner", r.Name, "attempt", d.Attempt)
	// Status, output and the result outlive a cancelled job context.
	finishCtx := context.WithoutCancel(ctx)
	if err := d.Start(ctx, w.cfg.Name); err != nil {
		switch {
		case errors.Is(err, queue.ErrCancelled):
			log.Info("job cancelled before it started")
			return
		case errors.Is(err, queue.ErrFinished):
			log.Info("job already finished; dropped", "err", err)
			return
		case errors.Is(err, queue.ErrSuperseded):
			log.Warn("a newer attempt of the job runs elsewhere; dropped", "err", err)
			return
		}
		log.Warn("could not record running status", "err", err)
	}

	jobCtx, cancelJob := context.WithCancelCause(ctx)
	defer cancelJob(nil)
	if cancelled, err := d.CancelWatch(jobCtx); err != nil {
		log.Warn("cannot watch for cancel requests", "err", err)
	} else {
		go func() {
			select {
			case <-cancelled:
				log.Info("cancel requested")
				cancelJob(queue.ErrCancelled)
			case <-jobCtx.Done():
			}
		}()
	}
	stopProgress := w.keepAlive(d, log)
	log.Info("job started")

	logs := d.Logs(finishCtx)
	col := &artifactCollector{q: w.q, jobID: d.Job.ID, limit: w.artifactLimit(d.Job)}
	vjob := vmrun.Job{
		ID: d.Job.ID, Script: d.Job.Script, Env: d.Job.Env, Timeout: d.Job.Timeout(w.cfg.DefaultTimeout),
		Collect: func(tar io.Reader) error { return col.collect(jobCtx, tar) },
		OnPhase: func(phase string) {
			if err := d.Phase(finishCtx, phase); err != nil {
				log.Warn("could not record phase", "phase", phase, "err", err)
			}
		},
	}
	var (
		out vmrun.Outcome
		err error
	)
	if d.Job.Inputs != nil {
		var in io.ReadCloser
		if in, err = w.openInputs(jobCtx, d.Job); err == nil {
			defer in.Close()
			vjob.Input, vjob.InputSize = in, d.Job.Inputs.Size
		}
	}
	if err == nil {
		out, err = w.exec.Run(jobCtx, r, vjob, logs)
	}

	cancelled := errors.Is(context.Cause(jobCtx), queue.ErrCancelled)
	if err != nil && !cancelled && ctx.Err() != nil && !errors.Is(err, vmrun.ErrTimeout) {
		// The worker is going down hard: hand the job back rather than fail it.
		stopProgress()
		if rerr := d.Release(0); rerr != nil {
			log.Error("could not hand the job back", "err", rerr)
		}
		log.Warn("job interrupted by shutdown; handed back to the queue", "err", err)
		return
	}
	if !cancelled {
		if delay, retry := retryDelay(err, d.Attempt, w.cfg.Consumer.MaxDeliver); retry {
			stopProgress()
			log.Warn("infrastructure failure; job handed back for another attempt", "err", err, "delay", delay)
			switch rerr := d.Retry(finishCtx, delay, err); {
			case errors.Is(rerr, queue.ErrSuperseded), errors.Is(rerr, queue.ErrFinished):
				log.Warn("the job is no longer this attempt's; dropped", "err", rerr)
			case rerr != nil:
				log.Error("could not hand the job back; it will be redelivered after the ack wait", "err", rerr)
			}
			return
		}
	}
	res := resultOf(out, err)
	if cancelled {
		res = queue.Result{State: queue.StateCancelled, Error: "cancelled while " + lastPhase(out), Timings: res.Timings}
	} else if retryable(err) {
		res.Error = fmt.Sprintf("gave up after %d attempts: %s", d.Attempt, res.Error)
	}
	res.Artifacts, res.Refused = col.artifacts, col.refused
	res.LogChunks, res.LogBytes = logs.Chunks(), logs.Bytes()
	// Progress acks go on while the result is stored, so that a broker that is briefly away
	// does not cost the job a redelivery.
	w.finish(ctx, d, res, log)
	stopProgress()
	log.Info("job finished", "state", res.State, "exit_code", exitCode(res), "err", res.Error,
		"artifacts", len(res.Artifacts), "prepare", out.Prepare, "boot", out.Boot, "inputs", out.Inputs,
		"run", out.Run, "collect", out.Collect, "teardown", out.Teardown)
}

// finishPatience bounds how long a worker keeps trying to store a result (a broker outage);
// after that the job is left to its redelivery.
const finishPatience = 10 * time.Minute

// finish stores the result and acks the job, retrying with back-off while the broker is away.
func (w *Worker) finish(ctx context.Context, d *queue.Delivery, res queue.Result, log *slog.Logger) {
	delay, deadline := time.Second, time.Now().Add(finishPatience)
	for {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		err := d.Finish(fctx, res)
		cancel()
		switch {
		case err == nil:
			return
		case errors.Is(err, queue.ErrSuperseded), errors.Is(err, queue.ErrFinished):
			log.Warn("result dropped: the job is no longer this attempt's", "err", err)
			return
		case time.Now().After(deadline) || ctx.Err() != nil:
			log.Error("could not store the result; the job will be redelivered", "err", err)
			return
		}
		log.Warn("could not store the result; retrying", "err", err, "in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// lastPhase names how far a job got, from the executor's timings.
func lastPhase(o vmrun.Outcome) string {
	switch {
	case o.Collect > 0:
		return "collecting artifacts"
	case o.Run > 0:
		return "running"
	case o.Inputs > 0:
		return "sending inputs"
	}
	return "booting"
}

// claim records d as running here, or hands it to the delivery of the same job that already
// runs here and returns false.
func (w *Worker) claim(d *queue.Delivery) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if running, ok := w.running[d.Job.ID]; ok {
		running.Absorb(d)
		return false
	}
	w.running[d.Job.ID] = d
	return true
}

func (w *Worker) release(d *queue.Delivery) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.running, d.Job.ID)
}

// keepAlive sends progress acks every third of the ack wait until the returned stop is called.
func (w *Worker) keepAlive(d *queue.Delivery, log *slog.Logger) (stop func()) {
	every := w.cfg.Consumer.AckWait / 3
	if every <= 0 {
		every = 30 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := d.InProgress(); err != nil {
					log.Warn("progress ack failed; the job may be redelivered elsewhere", "err", err)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// resultOf turns the executor's answer into the job's terminal result.
func resultOf(o vmrun.Outcome, err error) queue.Result {
	res := queue.Result{Timings: queue.Timings{
		PrepareMS: o.Prepare.Milliseconds(), BootMS: o.Boot.Milliseconds(),
		InputsMS: o.Inputs.Milliseconds(), RunMS: o.Run.Milliseconds(),
		CollectMS: o.Collect.Milliseconds(), TeardownMS: o.Teardown.Milliseconds(),
	}}
	switch {
	case err == nil:
		code := o.ExitCode
		res.ExitCode = &code
		res.State = queue.StateFailed
		if code == 0 {
			res.State = queue.StateSucceeded
		}
		if o.OutputIncomplete {
			res.Error = "the script exited but the end of its output did not arrive"
		}
	case errors.Is(err, vmrun.ErrTimeout):
		res.State = queue.StateTimedOut
		res.Error = err.Error()
	default:
		res.State = queue.StateError
		res.Error = err.Error()
	}
	return res
}

func exitCode(r queue.Result) any {
	if r.ExitCode == nil {
		return nil
	}
	return *r.ExitCode
}
