// Command submit queues a job for a smallscale runner and follows it: the guest's output on
// stdout as it is produced, the job id and outcome on stderr, and the script's exit status as
// its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/smallscale-ci/smallscale/queue"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// Exit statuses when the script's own status is not available. A script can exit with these
// too; the outcome line on stderr tells which it was.
const (
	exitUsage       = 64  // bad flags or bad input: nothing was queued
	exitNoRunner    = 69  // no worker serves the runner: nothing was queued
	exitNoNATS      = 75  // NATS could not be reached: nothing was queued (or the job's fate is unknown)
	exitTimedOut    = 124 // the job ran past its timeout
	exitError       = 125 // smallscale could not run the job (VM, guest agent, libvirt)
	exitInterrupted = 130 // cancelled, or submit was interrupted while following
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		return exitUsage
	}
	job, err := o.job()
	if err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		return exitUsage
	}

	nc, q, err := connect(ctx, o.natsURL, o.creds, o.prefix)
	if err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		if errors.Is(err, queue.ErrNotSetUp) {
			return exitNoRunner
		}
		return exitNoNATS
	}
	defer nc.Close()

	if err := q.Submit(ctx, job); err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		switch {
		case errors.Is(err, queue.ErrNoSuchRunner):
			return exitNoRunner
		case errors.Is(err, queue.ErrInvalidJob), errors.Is(err, queue.ErrDuplicateJob):
			return exitUsage
		}
		return exitNoNATS
	}
	if o.detach {
		fmt.Fprintln(stdout, job.ID)
		return 0
	}
	fmt.Fprintf(stderr, "submit: job %s queued on runner %s\n", job.ID, job.Runner)

	res, err := q.Follow(ctx, job.ID, stdout)
	if err != nil && !errors.Is(err, queue.ErrLogIncomplete) {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "submit: stopped following; job %s goes on\n", job.ID)
			return exitInterrupted
		}
		fmt.Fprintf(stderr, "submit: following job %s: %v\n", job.ID, err)
		return exitNoNATS
	}
	if err != nil {
		fmt.Fprintf(stderr, "submit: warning: %v\n", err)
	}
	return report(res, stderr)
}

// report prints the outcome line and maps the result to submit's exit status.
func report(res queue.Result, stderr io.Writer) int {
	took := res.FinishedAt.Sub(res.StartedAt).Round(100e6)
	switch res.State {
	case queue.StateSucceeded, queue.StateFailed:
		code := -1
		if res.ExitCode != nil {
			code = *res.ExitCode
		}
		fmt.Fprintf(stderr, "submit: job %s %s (exit %d) in %s on %s\n", res.JobID, res.State, code, took, res.Worker)
		if res.Error != "" {
			fmt.Fprintf(stderr, "submit: warning: %s\n", res.Error)
		}
		if code < 0 || code > 255 {
			return exitError
		}
		return code
	case queue.StateTimedOut:
		fmt.Fprintf(stderr, "submit: job %s timed out: %s\n", res.JobID, res.Error)
		return exitTimedOut
	case queue.StateCancelled:
		fmt.Fprintf(stderr, "submit: job %s was cancelled\n", res.JobID)
		return exitInterrupted
	default:
		fmt.Fprintf(stderr, "submit: job %s could not run: %s\n", res.JobID, res.Error)
		return exitError
	}
}
