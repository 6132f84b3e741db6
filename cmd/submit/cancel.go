package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/smallscale-ci/smallscale/queue"
)

const cancelUsage = `Usage: submit cancel ID [--json]

Cancels job ID. A queued job is cancelled at once and never runs; a running job is marked
"cancel requested" and its worker destroys its VM within seconds (submit status ID shows when
it has). Prints the job's state after the cancel; with --json, its status record (queue.Status).

Exit status:
    0  the job is cancelled, or its cancel was requested
    1  the job had already finished: nothing to cancel
` + commonExits + `
Flags:
`

// runCancel is submit cancel ID.
func runCancel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, c := newFlagSet("cancel", cancelUsage, stderr)
	id, code, ok := parseJobCommand(fs, args, stderr)
	if !ok {
		return code
	}
	nc, q, code, ok := c.open(ctx, stderr)
	if !ok {
		return code
	}
	defer nc.Close()

	st, err := q.Cancel(ctx, id)
	if errors.Is(err, queue.ErrFinished) {
		fmt.Fprintf(stderr, "submit: job %s already finished (%s): nothing to cancel\n", id, st.State)
		if c.json {
			printJSON(stdout, st)
		}
		return exitFailed
	}
	if err != nil {
		return queueFailure(ctx, err, stderr)
	}
	switch {
	case c.json:
		printJSON(stdout, st)
	case st.State == queue.StateCancelled:
		fmt.Fprintf(stdout, "job %s cancelled\n", id)
	default:
		on := ""
		if st.Worker != "" {
			on = " on " + st.Worker
		}
		fmt.Fprintf(stdout, "job %s %s%s: cancel requested\n", id, st.State, on)
	}
	return 0
}
