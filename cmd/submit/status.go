package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/smallscale-ci/smallscale/queue"
)

const statusUsage = `Usage: submit status ID [--json]

Prints where job ID stands: its state, runner, worker and attempt; once it ended, its exit code,
its error and how many artifacts it left; and its timeline, each phase with the time since it
was queued. With --json, the status record as stored (queue.Status).

Exit status:
    0  the status was printed, whatever the job's state
` + commonExits + `
Flags:
`

// runStatus is submit status ID.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, c := newFlagSet("status", statusUsage, stderr)
	id, code, ok := parseJobCommand(fs, args, stderr)
	if !ok {
		return code
	}
	nc, q, code, ok := c.open(ctx, stderr)
	if !ok {
		return code
	}
	defer nc.Close()

	st, err := q.Status(ctx, id)
	if err != nil {
		return queueFailure(ctx, err, stderr)
	}
	if c.json {
		printJSON(stdout, st)
		return 0
	}
	var res *queue.Result
	if st.State.Terminal() {
		r, err := q.Result(ctx, id)
		switch {
		case err == nil:
			res = &r
		case !errors.Is(err, queue.ErrNotFound): // an expired result only loses the count
			return queueFailure(ctx, err, stderr)
		}
	}
	printStatus(stdout, st, res, time.Now())
	return 0
}

func printStatus(w io.Writer, st queue.Status, res *queue.Result, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	line("job", st.JobID)
	line("runner", st.Runner)
	state := string(st.State)
	if st.CancelRequested && !st.State.Terminal() {
		state += " (cancel requested)"
	}
	line("state", state)
	if st.Worker != "" {
		line("worker", st.Worker)
	}
	if st.Attempt > 0 {
		line("attempt", strconv.Itoa(st.Attempt))
	}
	if st.ExitCode != nil {
		line("exit", strconv.Itoa(*st.ExitCode))
	}
	if st.Error != "" {
		line("error", st.Error)
	}
	if res != nil {
		a := strconv.Itoa(len(res.Artifacts))
		if len(res.Refused) > 0 {
			a += fmt.Sprintf(" (%d refused by the worker)", len(res.Refused))
		}
		line("artifacts", a)
	}
	if !st.SubmittedAt.IsZero() {
		line("submitted", fmt.Sprintf("%s (%s ago)", st.SubmittedAt.Local().Format(time.DateTime), age(now.Sub(st.SubmittedAt))))
	}
	if !st.FinishedAt.IsZero() && !st.StartedAt.IsZero() {
		line("took", st.FinishedAt.Sub(st.StartedAt).Round(time.Millisecond).String())
	}
	tw.Flush()
	if len(st.Phases) > 0 {
		fmt.Fprintln(w, "timeline")
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		first := st.Phases[0].At
		for _, p := range st.Phases {
			fmt.Fprintf(tw, "  %s\t%s\t+%s\n", p.Name, p.At.Local().Format("15:04:05.000"), p.At.Sub(first).Round(time.Millisecond))
		}
		tw.Flush()
	}
}

// age is a duration as a list shows it: 12s, 5m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

const listUsage = `Usage: submit list [--runner R] [--state S] [--limit N] [--json]

Prints the newest jobs first, one a line: job id, runner, state, worker, exit code, when it was
submitted and how long ago. --runner and --state keep only the jobs of one runner or in one
state (queued, running, succeeded, failed, timed_out, cancelled, error). With --json, a JSON
array of status records (queue.Status).

Exit status:
    0  the list was printed, even if empty
   64  bad usage
   69  no worker ever set up this NATS server
   75  NATS could not be reached

Flags:
`

// runList is submit list.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, c := newFlagSet("list", listUsage, stderr)
	var f queue.ListFilter
	var state string
	fs.StringVar(&f.Runner, "runner", "", "only jobs of this runner")
	fs.StringVar(&state, "state", "", "only jobs in this state")
	fs.IntVar(&f.Limit, "limit", 20, "at most this many jobs")
	rest, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	f.State = queue.State(state)
	switch {
	case len(rest) > 0:
		fmt.Fprintf(stderr, "submit list: unexpected argument %q (submit list -h explains)\n", rest[0])
		return exitUsage
	case f.Runner != "" && !queue.ValidRunnerName(f.Runner):
		fmt.Fprintf(stderr, "submit list: runner name %q must match [a-z0-9][a-z0-9_-]*\n", f.Runner)
		return exitUsage
	case state != "" && !validState(f.State):
		fmt.Fprintf(stderr, "submit list: --state %q: want one of %v\n", state, validStates)
		return exitUsage
	case f.Limit < 1:
		fmt.Fprintf(stderr, "submit list: --limit %d: want 1 or more\n", f.Limit)
		return exitUsage
	}
	nc, q, code, ok := c.open(ctx, stderr)
	if !ok {
		return code
	}
	defer nc.Close()

	jobs, err := q.List(ctx, f)
	if err != nil {
		return queueFailure(ctx, err, stderr)
	}
	if c.json {
		if jobs == nil {
			jobs = []queue.Status{}
		}
		printJSON(stdout, jobs)
		return 0
	}
	printList(stdout, jobs, time.Now())
	return 0
}

func printList(w io.Writer, jobs []queue.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB ID\tRUNNER\tSTATE\tWORKER\tEXIT\tSUBMITTED\tAGE")
	for _, st := range jobs {
		worker, exit, submitted, ago := "-", "-", "-", "-"
		if st.Worker != "" {
			worker = st.Worker
		}
		if st.ExitCode != nil {
			exit = strconv.Itoa(*st.ExitCode)
		}
		if !st.SubmittedAt.IsZero() {
			submitted = st.SubmittedAt.Local().Format(time.DateTime)
			ago = age(now.Sub(st.SubmittedAt))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.JobID, st.Runner, st.State, worker, exit, submitted, ago)
	}
	tw.Flush()
}
