// Command submit queues a job for a smallscale runner and follows it: the guest's output on
// stdout as it is produced, the job id and outcome on stderr, and the script's exit status as
// its own. Its subcommands inspect, follow, cancel and list jobs and download their artifacts.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

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
	exitFailed      = 1   // a subcommand could not do its job (cancel of a finished job, an artifact refused)
	exitUsage       = 64  // bad flags or bad input: nothing was queued
	exitNoRunner    = 69  // no worker serves the runner, or no such job: nothing was queued
	exitNoNATS      = 75  // NATS could not be reached: nothing was queued (or the job's fate is unknown)
	exitTimedOut    = 124 // the job ran past its timeout
	exitError       = 125 // smallscale could not run the job (VM, guest agent, libvirt)
	exitInterrupted = 130 // cancelled, or submit was interrupted while following
)

// exitNotFound is the status of a subcommand given an unknown job id.
const exitNotFound = exitNoRunner

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return runCommand(ctx, args[0], args[1:], stdout, stderr)
	}
	return runJob(ctx, args, stdout, stderr)
}

// runJob is the main form: queue a job, follow it, download its artifacts.
func runJob(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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
	if len(o.inputs) > 0 {
		if _, err := checkInputs(o.inputs, int64(o.maxInput)); err != nil {
			fmt.Fprintf(stderr, "submit: %v\n", err)
			return exitUsage
		}
	}
	if o.artifacts != "" {
		if err := checkOutputDir(o.artifacts); err != nil {
			fmt.Fprintf(stderr, "submit: --artifacts: %v\n", err)
			return exitUsage
		}
	}

	nc, q, err := o.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		if errors.Is(err, queue.ErrNotSetUp) {
			return exitNoRunner
		}
		return exitNoNATS
	}
	defer nc.Close()

	if len(o.inputs) > 0 {
		// An upload for a runner nobody serves would be wasted.
		if err := q.CheckRunner(ctx, job.Runner); err != nil {
			fmt.Fprintf(stderr, "submit: %v\n", err)
			return submitExit(err)
		}
	}
	if err := queueJob(ctx, q, &job, o.inputs, int64(o.maxInput)); err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		switch {
		case errors.Is(err, errInput):
			return exitUsage
		case ctx.Err() != nil:
			fmt.Fprintln(stderr, "submit: interrupted")
			return exitInterrupted
		}
		return submitExit(err)
	}
	if o.detach {
		if o.json {
			printJSON(stdout, map[string]string{"job_id": job.ID})
		} else {
			fmt.Fprintln(stdout, job.ID)
		}
		return 0
	}
	fmt.Fprintf(stderr, "submit: job %s queued on runner %s\n", job.ID, job.Runner)

	output := stdout
	if o.json {
		output = stderr // stdout carries the result alone
	}
	res, code, done := follow(ctx, q, job.ID, output, stderr)
	if !done {
		return code
	}
	warnRefused(res, stderr)
	if o.artifacts != "" {
		written, failed, err := downloadArtifacts(ctx, q, res, o.artifacts, stderr)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "submit: %v\n", err)
			failed = len(res.Artifacts)
		default:
			fmt.Fprintf(stderr, "submit: %d artifacts written to %s\n", len(written), o.artifacts)
		}
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "submit: interrupted while downloading artifacts (submit artifacts %s -o DIR fetches them again)\n", job.ID)
			return exitInterrupted
		}
		if failed > 0 && code == 0 {
			fmt.Fprintf(stderr, "submit: %d artifacts were refused: exit status 1\n", failed)
			code = exitFailed
		}
	}
	if o.json {
		printJSON(stdout, res)
	}
	return code
}

// queueJob uploads the inputs, if any, and submits the job. When it fails, nothing is queued
// and the inputs are deleted again.
func queueJob(ctx context.Context, q *queue.Queue, job *queue.Job, inputs []string, maxInput int64) error {
	if len(inputs) > 0 {
		size, err := uploadInputs(ctx, q, job.ID, inputs, maxInput)
		if err != nil {
			return err
		}
		job.Inputs = &queue.Inputs{Object: queue.InputObject(job.ID), Size: size}
	}
	err := q.Submit(ctx, *job)
	if err != nil && job.Inputs != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := q.DeleteObject(dctx, job.Inputs.Object); derr != nil {
			err = errors.Join(err, fmt.Errorf("inputs left behind: %w", derr))
		}
	}
	return err
}

// submitExit maps an error of Submit (or of checks before it) to the exit status.
func submitExit(err error) int {
	switch {
	case errors.Is(err, queue.ErrNoSuchRunner):
		return exitNoRunner
	case errors.Is(err, queue.ErrInvalidJob), errors.Is(err, queue.ErrDuplicateJob):
		return exitUsage
	}
	return exitNoNATS
}

// follow writes the job's output to out until its result arrives and maps the result to the
// exit status. done is false when no result came (interrupted, NATS gone); code says why.
func follow(ctx context.Context, q *queue.Queue, jobID string, out, stderr io.Writer) (res queue.Result, code int, done bool) {
	res, err := q.Follow(ctx, jobID, out)
	if err != nil && !errors.Is(err, queue.ErrLogIncomplete) {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "submit: stopped following; job %s goes on\n", jobID)
			return res, exitInterrupted, false
		}
		fmt.Fprintf(stderr, "submit: following job %s: %v\n", jobID, err)
		return res, exitNoNATS, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "submit: warning: %v\n", err)
	}
	return res, report(res, stderr), true
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

// warnRefused tells what the worker would not collect from the job's output directory.
func warnRefused(res queue.Result, stderr io.Writer) {
	for _, r := range res.Refused {
		fmt.Fprintf(stderr, "submit: warning: the worker did not collect %q: %s\n", r.Path, r.Reason)
	}
}
