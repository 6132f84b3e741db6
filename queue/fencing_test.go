package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/queue"
)

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// resultCount counts the result messages of one job.
func resultCount(t *testing.T, js jetstream.JetStream, q *queue.Queue, id string) uint64 {
	t.Helper()
	s, err := js.Stream(ctxT(t), q.Names().ResultsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t), jetstream.WithSubjectFilter(q.Names().ResultSubject(id)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[q.Names().ResultSubject(id)]
}

// A worker that went quiet past the ack wait loses the job to a newer attempt: its late result
// and ack are refused, the newer attempt's stand, and the job has exactly one result.
func TestStaleAttemptCannotOverwriteNewer(t *testing.T) {
	q, js := startQueue(t)
	ctx := ctxT(t)
	opts := queue.ConsumerOptions{AckWait: time.Second, MaxDeliver: 5}
	p, err := q.Puller(ctx, "tiny", opts)
	if err != nil {
		t.Fatal(err)
	}
	job := newJob(t, "tiny")
	if err := q.Submit(ctx, job); err != nil {
		t.Fatal(err)
	}
	old, err := pull(t, p, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Start(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	// The old worker sends no progress ack; the server redelivers after the ack wait.
	newer, err := pull(t, p, 10*time.Second)
	if err != nil {
		t.Fatalf("no redelivery after the ack wait: %v", err)
	}
	if newer.Job.ID != job.ID || newer.Attempt != 2 {
		t.Fatalf("redelivered %s attempt %d", newer.Job.ID, newer.Attempt)
	}
	if err := newer.Start(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	code := 1
	if err := old.Finish(ctx, queue.Result{State: queue.StateFailed, ExitCode: &code}); !errors.Is(err, queue.ErrSuperseded) {
		t.Fatalf("old attempt's Finish: %v, want ErrSuperseded", err)
	}
	if _, err := q.Result(ctx, job.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("the superseded attempt stored a result: %v", err)
	}
	zero := 0
	if err := newer.Finish(ctx, queue.Result{State: queue.StateSucceeded, ExitCode: &zero}); err != nil {
		t.Fatal(err)
	}
	res, err := q.Result(ctx, job.ID)
	if err != nil || res.State != queue.StateSucceeded || res.Worker != "new" || res.Attempt != 2 {
		t.Fatalf("result = %+v, %v", res, err)
	}
	if n := resultCount(t, js, q, job.ID); n != 1 {
		t.Fatalf("%d results, want 1", n)
	}
	if st, _ := q.Status(ctx, job.ID); st.State != queue.StateSucceeded || st.Attempt != 2 {
		t.Fatalf("status = %+v", st)
	}
	if n := pendingJobs(t, js, q); n != 0 {
		t.Fatalf("jobs stream holds %d messages", n)
	}
}

// A job whose every delivery was lost gets a terminal error result and leaves the queue,
// instead of staying in the work queue undelivered for ever, even when no worker listened at
// the moment the server gave up on it.
func TestExhaustedJobIsAnswered(t *testing.T) {
	q, js := startQueue(t)
	ctx := ctxT(t)
	p, err := q.Puller(ctx, "tiny", queue.ConsumerOptions{AckWait: time.Second, MaxDeliver: 2})
	if err != nil {
		t.Fatal(err)
	}
	job := newJob(t, "tiny")
	if err := q.Submit(ctx, job); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		d, err := pull(t, p, 10*time.Second)
		if err != nil {
			t.Fatalf("delivery %d: %v", attempt, err)
		}
		if err := d.Start(ctx, "doomed"); err != nil {
			t.Fatal(err)
		}
		// The worker dies: no ack, no progress.
	}
	// The server notices the exhausted job when it would deliver it again, to a waiting pull,
	// as a live worker's puller always has one.
	if _, err := pull(t, p, 5*time.Second); !errors.Is(err, queue.ErrNoJob) {
		t.Fatalf("a third delivery: %v", err)
	}
	// No worker listened when the advisory came; it waits in its stream.
	deadline := time.Now().Add(10 * time.Second)
	for streamMsgs(t, js, q.Names().ExhaustedStream()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the max-deliveries advisory was not kept")
		}
		<-time.After(50 * time.Millisecond)
	}
	answered := make(chan string, 1)
	go func() {
		if err := q.AnswerExhausted(ctx, func(id string, err error) {
			if err != nil {
				t.Errorf("answer exhausted %s: %v", id, err)
			}
			answered <- id
		}); err != nil {
			t.Error(err)
		}
	}()
	select {
	case id := <-answered:
		if id != job.ID {
			t.Fatalf("answered %s, want %s", id, job.ID)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no max-deliveries advisory answered within 15s")
	}
	res, err := q.Result(ctx, job.ID)
	if err != nil || res.State != queue.StateError {
		t.Fatalf("result = %+v, %v", res, err)
	}
	if st, _ := q.Status(ctx, job.ID); st.State != queue.StateError {
		t.Fatalf("status = %+v", st)
	}
	if n := pendingJobs(t, js, q); n != 0 {
		t.Fatalf("jobs stream holds %d messages, want 0", n)
	}
	deadline = time.Now().Add(10 * time.Second)
	for streamMsgs(t, js, q.Names().ExhaustedStream()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the answered advisory stays in its stream")
		}
		<-time.After(50 * time.Millisecond)
	}
}
