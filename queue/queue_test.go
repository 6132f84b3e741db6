package queue_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/internal/natsserver"
	"github.com/smallscale-ci/smallscale/queue"
)

// startQueue runs a real JetStream server in-process and sets up smallscale's streams on it.
func startQueue(t *testing.T) (*queue.Queue, jetstream.JetStream) {
	t.Helper()
	s, err := natsserver.Start("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	js := connect(t, s.ClientURL())
	q, err := queue.Setup(context.Background(), js, queue.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	return q, js
}

func connect(t *testing.T, url string) jetstream.JetStream {
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
	return js
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newJob(t *testing.T, runner string) queue.Job {
	t.Helper()
	j, err := queue.NewJob(runner, "echo hello\n")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func pull(t *testing.T, p *queue.Puller, wait time.Duration) (*queue.Delivery, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return p.Next(ctx)
}

func pendingJobs(t *testing.T, js jetstream.JetStream, q *queue.Queue) uint64 {
	t.Helper()
	s, err := js.Stream(ctxT(t), q.Names().JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestSubmitPullFinishFollow(t *testing.T) {
	q, js := startQueue(t)
	ctx := ctxT(t)
	p, err := q.Puller(ctx, "tiny", queue.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := newJob(t, "tiny")
	job.Env = map[string]string{"FOO": "bar"}
	if err := q.Submit(ctx, job); err != nil {
		t.Fatal(err)
	}
	if st, err := q.Status(ctx, job.ID); err != nil || st.State != queue.StateQueued {
		t.Fatalf("status after submit = %+v, %v; want queued", st, err)
	}

	d, err := pull(t, p, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d.Job.ID != job.ID || d.Job.Env["FOO"] != "bar" || d.Job.Script != job.Script || d.Attempt != 1 {
		t.Fatalf("pulled %+v attempt %d, want the submitted job on attempt 1", d.Job, d.Attempt)
	}
	if err := d.Start(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := q.Status(ctx, job.ID); st.State != queue.StateRunning || st.Worker != "w1" {
		t.Fatalf("status while running = %+v", st)
	}

	// A follower that starts while the job runs sees the output live and then the result.
	var live bytes.Buffer
	followed := make(chan queue.Result, 1)
	followErr := make(chan error, 1)
	go func() {
		r, err := q.Follow(ctx, job.ID, &live)
		followErr <- err
		followed <- r
	}()
	logs := d.Logs(ctx)
	want := strings.Repeat("line of output\n", 10000) // 150 kB: several chunks
	if _, err := logs.Write([]byte(want)); err != nil {
		t.Fatal(err)
	}
	if _, err := logs.Write([]byte("done\n")); err != nil {
		t.Fatal(err)
	}
	code := 0
	if err := d.Finish(ctx, queue.Result{State: queue.StateSucceeded, ExitCode: &code, LogChunks: logs.Chunks(), LogBytes: logs.Bytes()}); err != nil {
		t.Fatal(err)
	}
	if err := <-followErr; err != nil {
		t.Fatal(err)
	}
	res := <-followed
	if res.State != queue.StateSucceeded || res.ExitCode == nil || *res.ExitCode != 0 || res.Worker != "w1" {
		t.Fatalf("result = %+v", res)
	}
	if live.String() != want+"done\n" {
		t.Fatalf("live output: %d bytes, want %d", live.Len(), len(want)+5)
	}
	if n := pendingJobs(t, js, q); n != 0 {
		t.Fatalf("jobs stream holds %d messages after the ack, want 0", n)
	}

	// After the job ended, results, status and logs stay readable, byte for byte.
	var late bytes.Buffer
	res2, err := q.Follow(ctx, job.ID, &late)
	if err != nil {
		t.Fatal(err)
	}
	if late.String() != live.String() || res2.JobID != job.ID {
		t.Fatalf("late follow differs from live: %d vs %d bytes", late.Len(), live.Len())
	}
	if r, err := q.Result(ctx, job.ID); err != nil || r.State != queue.StateSucceeded {
		t.Fatalf("Result = %+v, %v", r, err)
	}
	if st, _ := q.Status(ctx, job.ID); st.State != queue.StateSucceeded || st.ExitCode == nil {
		t.Fatalf("final status = %+v", st)
	}
}

func TestDuplicatePublishIsDropped(t *testing.T) {
	q, js := startQueue(t)
	ctx := ctxT(t)
	if _, err := q.Puller(ctx, "tiny", queue.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	job := newJob(t, "tiny")
	if err := q.Submit(ctx, job); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(ctx, job); !errors.Is(err, queue.ErrDuplicateJob) {
		t.Fatalf("second submit: %v, want ErrDuplicateJob", err)
	}
	if n := pendingJobs(t, js, q); n != 1 {
		t.Fatalf("jobs stream holds %d messages, want 1", n)
	}
}

func TestSubmitRefusesUnknownRunnerAndBadJobs(t *testing.T) {
	q, js := startQueue(t)
	ctx := ctxT(t)
	if err := q.Submit(ctx, newJob(t, "nosuch")); !errors.Is(err, queue.ErrNoSuchRunner) {
		t.Fatalf("submit to unknown runner: %v, want ErrNoSuchRunner", err)
	}
	bad := newJob(t, "Bad/Name")
	if err := q.Submit(ctx, bad); !errors.Is(err, queue.ErrInvalidJob) {
		t.Fatalf("submit with bad runner name: %v, want ErrInvalidJob", err)
	}
	if n := pendingJobs(t, js, q); n != 0 {
		t.Fatalf("jobs stream holds %d messages, want 0", n)
	}
}

// A worker without a free slot does not pull; a job it cannot start goes straight to another
// worker rather than waiting in this one's buffer for the ack wait to expire.
func TestSlotlessWorkerLeavesJobToAnother(t *testing.T) {
	s, err := natsserver.Start("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	ctx := ctxT(t)
	jsA, jsB := connect(t, s.ClientURL()), connect(t, s.ClientURL())
	qA, err := queue.Setup(ctx, jsA, queue.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	qB, err := queue.Setup(ctx, jsB, queue.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	opts := queue.ConsumerOptions{AckWait: time.Minute}
	pA, err := qA.Puller(ctx, "tiny", opts)
	if err != nil {
		t.Fatal(err)
	}
	pB, err := qB.Puller(ctx, "tiny", opts)
	if err != nil {
		t.Fatal(err)
	}
	first, second := newJob(t, "tiny"), newJob(t, "tiny")
	for _, j := range []queue.Job{first, second} {
		if err := qA.Submit(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	// Worker A has one slot and takes one job.
	dA, err := pull(t, pA, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Its slot is now busy, so it does not pull again; worker B gets the other job at once.
	dB, err := pull(t, pB, 5*time.Second)
	if err != nil {
		t.Fatalf("worker B got no job while A was busy: %v", err)
	}
	if dA.Job.ID == dB.Job.ID {
		t.Fatalf("both workers got job %s", dA.Job.ID)
	}
	if dA.Job.ID != first.ID || dB.Job.ID != second.ID {
		t.Fatalf("jobs out of order: A=%s B=%s", dA.Job.ID, dB.Job.ID)
	}
}

func TestInvalidMessagesAreAnsweredAndTerminated(t *testing.T) {
	q, js := startQueue(t)
	ctx := ctxT(t)
	p, err := q.Puller(ctx, "tiny", queue.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := newJob(t, "tiny")
	withID := `{"format":99,"id":"` + job.ID + `","runner":"tiny","script":"true"}`
	for _, data := range []string{"not json", withID} {
		if _, err := js.Publish(ctx, q.Names().JobSubject("tiny"), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := pull(t, p, 5*time.Second); !errors.Is(err, queue.ErrInvalidJob) {
			t.Fatalf("Next on a bad message: %v, want ErrInvalidJob", err)
		}
	}
	res, err := q.Result(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != queue.StateError || !strings.Contains(res.Error, "format 99") {
		t.Fatalf("result of the bad job = %+v", res)
	}
	if _, err := pull(t, p, 500*time.Millisecond); !errors.Is(err, queue.ErrNoJob) {
		t.Fatalf("a terminated message came back: %v", err)
	}
}
