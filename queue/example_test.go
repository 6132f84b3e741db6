package queue_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/queue"
)

// A CI system submits a job to runner "tiny" and follows it: the guest's output goes to stdout
// as it is produced, and the result says how the script ended. It needs a worker serving the
// runner on the NATS server (bin/worker starts one with an embedded server on 127.0.0.1:4222),
// so it is only compiled, not run, by go test.
func ExampleQueue_Submit() {
	ctx := context.Background()
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	q, err := queue.Open(ctx, js, queue.DefaultPrefix) // ErrNotSetUp: no worker ever ran here
	if err != nil {
		log.Fatal(err)
	}

	job, err := queue.NewJob("tiny", "echo \"$GREETING from $CI_RUNNER\"\n")
	if err != nil {
		log.Fatal(err)
	}
	job.Env = map[string]string{"GREETING": "hello"}
	job.TimeoutSeconds = 300
	if err := q.Submit(ctx, job); err != nil { // ErrNoSuchRunner: no worker serves "tiny"
		log.Fatal(err)
	}

	res, err := q.Follow(ctx, job.ID, os.Stdout)
	if err != nil && !errors.Is(err, queue.ErrLogIncomplete) {
		log.Fatal(err)
	}
	switch res.State {
	case queue.StateSucceeded, queue.StateFailed:
		fmt.Printf("job %s exited %d\n", job.ID, *res.ExitCode)
	default: // timed_out, cancelled, error
		fmt.Printf("job %s %s: %s\n", job.ID, res.State, res.Error)
	}
}
