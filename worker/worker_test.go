package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/internal/natsserver"
	"github.com/smallscale-ci/smallscale/queue"
	"github.com/smallscale-ci/smallscale/vmrun"
)

func TestResultOf(t *testing.T) {
	tests := []struct {
		name     string
		out      vmrun.Outcome
		err      error
		state    queue.State
		exitCode int // -1: none
		errText  string
	}{
		{"exit 0", vmrun.Outcome{ExitCode: 0}, nil, queue.StateSucceeded, 0, ""},
		{"exit 3", vmrun.Outcome{ExitCode: 3}, nil, queue.StateFailed, 3, ""},
		{"killed by signal", vmrun.Outcome{ExitCode: 137}, nil, queue.StateFailed, 137, ""},
		{"output lost", vmrun.Outcome{ExitCode: 0, OutputIncomplete: true}, nil, queue.StateSucceeded, 0, "end of its output"},
		{"timeout", vmrun.Outcome{}, fmt.Errorf("%w after 3s", vmrun.ErrTimeout), queue.StateTimedOut, -1, "timed out"},
		{"boot", vmrun.Outcome{}, fmt.Errorf("%w: deadline", vmrun.ErrBoot), queue.StateError, -1, "did not boot"},
		{"libvirt", vmrun.Outcome{}, fmt.Errorf("%w: start domain", vmrun.ErrLibvirt), queue.StateError, -1, "start domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resultOf(tt.out, tt.err)
			if r.State != tt.state {
				t.Errorf("state = %s, want %s", r.State, tt.state)
			}
			switch {
			case tt.exitCode < 0 && r.ExitCode != nil:
				t.Errorf("exit code = %d, want none", *r.ExitCode)
			case tt.exitCode >= 0 && (r.ExitCode == nil || *r.ExitCode != tt.exitCode):
				t.Errorf("exit code = %v, want %d", r.ExitCode, tt.exitCode)
			}
			if (tt.errText == "") != (r.Error == "") || (tt.errText != "" && !strings.Contains(r.Error, tt.errText)) {
				t.Errorf("error = %q, want it to mention %q", r.Error, tt.errText)
			}
		})
	}
}

// blockingExecutor stands in for the VM layer: each job waits until released, so a test can
// hold a worker's slots busy. The queue around it is real.
type blockingExecutor struct {
	started chan string
	release chan struct{}
}

func (b *blockingExecutor) Run(ctx context.Context, r *vmrun.Runner, job vmrun.Job, out io.Writer) (vmrun.Outcome, error) {
	b.started <- job.ID
	fmt.Fprintf(out, "running %s\n", job.ID)
	select {
	case <-b.release:
		return vmrun.Outcome{ExitCode: 0}, nil
	case <-ctx.Done():
		return vmrun.Outcome{}, ctx.Err()
	}
}

func startQueue(t *testing.T) (*queue.Queue, string) {
	t.Helper()
	s, err := natsserver.Start("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return openQueue(t, s.ClientURL()), s.ClientURL()
}

func openQueue(t *testing.T, url string) *queue.Queue {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Setup(context.Background(), js, queue.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// submitJobs queues n jobs for runner tiny. It sets up the runner's consumer first, as the
// worker does at start-up, so that the submit does not race the worker's Run.
func submitJobs(t *testing.T, q *queue.Queue, n int) []string {
	t.Helper()
	if _, err := q.Puller(context.Background(), "tiny", queue.ConsumerOptions{AckWait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range n {
		j, err := queue.NewJob("tiny", "true")
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	return ids
}

func newWorker(t *testing.T, q *queue.Queue, slots int, exec Executor) *Worker {
	t.Helper()
	w, err := New(Config{Name: "w", Concurrency: slots, DefaultTimeout: time.Minute,
		Consumer: queue.ConsumerOptions{AckWait: time.Minute}},
		q, exec, map[string]*vmrun.Runner{"tiny": {Name: "tiny"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func waitStarted(t *testing.T, started <-chan string) string {
	t.Helper()
	select {
	case id := <-started:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no job started within 10s")
		return ""
	}
}

// A worker with one slot runs one job; the job it has no slot for stays in the queue for
// another host, which gets it at once.
func TestWorkerTakesOnlyWhatItHasSlotsFor(t *testing.T) {
	q, url := startQueue(t)
	exec := &blockingExecutor{started: make(chan string, 4), release: make(chan struct{})}
	w := newWorker(t, q, 1, exec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, context.Background()) }()
	t.Cleanup(func() {
		cancel()
		close(exec.release)
		<-done
	})

	ids := submitJobs(t, q, 2)
	if got := waitStarted(t, exec.started); got != ids[0] {
		t.Fatalf("worker started %s, want the first job %s", got, ids[0])
	}
	other := openQueue(t, url)
	p, err := other.Puller(context.Background(), "tiny", queue.ConsumerOptions{AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	d, err := p.Next(pctx)
	if err != nil {
		t.Fatalf("another host got nothing while the busy worker held one job: %v", err)
	}
	if d.Job.ID != ids[1] {
		t.Fatalf("another host got %s, want %s", d.Job.ID, ids[1])
	}
	select {
	case id := <-exec.started:
		t.Fatalf("the one-slot worker started a second job %s", id)
	default:
	}
}

// On stop, a worker takes no new job but finishes the running ones and stores their results.
func TestStopFinishesRunningJobs(t *testing.T) {
	q, _ := startQueue(t)
	exec := &blockingExecutor{started: make(chan string, 4), release: make(chan struct{})}
	w := newWorker(t, q, 2, exec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, context.Background()) }()

	ids := submitJobs(t, q, 1)
	waitStarted(t, exec.started)
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a job was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	later := submitJobs(t, q, 1)
	close(exec.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	res, err := q.Result(context.Background(), ids[0])
	if err != nil || res.State != queue.StateSucceeded {
		t.Fatalf("result of the running job = %+v, %v", res, err)
	}
	if _, err := q.Result(context.Background(), later[0]); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("the job submitted after stop has a result: %v", err)
	}
	if st, _ := q.Status(context.Background(), later[0]); st.State != queue.StateQueued {
		t.Fatalf("the job submitted after stop is %s, want queued", st.State)
	}
}

// When the jobs' context ends (a second signal), running jobs are handed back, not failed.
func TestHardStopHandsJobsBack(t *testing.T) {
	q, url := startQueue(t)
	exec := &blockingExecutor{started: make(chan string, 4), release: make(chan struct{})}
	w := newWorker(t, q, 1, exec)
	ctx, cancel := context.WithCancel(context.Background())
	jobCtx, jobCancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, jobCtx) }()

	ids := submitJobs(t, q, 1)
	waitStarted(t, exec.started)
	cancel()
	jobCancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := q.Result(context.Background(), ids[0]); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("an interrupted job got a result: %v", err)
	}
	p, err := openQueue(t, url).Puller(context.Background(), "tiny", queue.ConsumerOptions{AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	d, err := p.Next(pctx)
	if err != nil || d.Job.ID != ids[0] || d.Attempt != 2 {
		t.Fatalf("redelivery: %+v, %v; want job %s on attempt 2", d, err, ids[0])
	}
}
