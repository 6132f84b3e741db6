package main

import (
	"context"
	"fmt"
	"io"
)

const logsUsage = `Usage: submit logs ID [-f]

Prints the output job ID has produced so far on stdout, byte for byte, and returns. With -f it
follows a running job (or waits for a queued one) to its end, printing the output as it is
produced, and then exits like the main form: with the script's exit status, or 124, 125 or 130
when the job timed out, could not run or was cancelled.

--json is refused: the output is raw bytes, not records. submit status --json ID gives the
job's outcome.

Exit status:
    0  the output was printed (without -f)
` + commonExits + `
Flags:
`

// runLogs is submit logs ID [-f].
func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, c := newFlagSet("logs", logsUsage, stderr)
	var followFlag bool
	fs.BoolVar(&followFlag, "f", false, "follow the job to its end and exit with its status")
	id, code, ok := parseJobCommand(fs, args, stderr)
	if !ok {
		return code
	}
	if c.json {
		fmt.Fprintln(stderr, "submit logs: --json is not supported: the output is raw bytes (submit status --json ID gives the outcome)")
		return exitUsage
	}
	nc, q, code, ok := c.open(ctx, stderr)
	if !ok {
		return code
	}
	defer nc.Close()

	// Both Logs and Follow take an unknown id for a job without output yet, and Follow would
	// wait for it forever.
	if _, err := q.Status(ctx, id); err != nil {
		return queueFailure(ctx, err, stderr)
	}
	if followFlag {
		_, code, _ := follow(ctx, q, id, stdout, stderr)
		return code
	}
	if err := q.Logs(ctx, id, stdout); err != nil {
		return queueFailure(ctx, err, stderr)
	}
	return 0
}
