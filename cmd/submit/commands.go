package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/smallscale-ci/smallscale/queue"
)

// commonExits ends every subcommand's list of exit statuses.
const commonExits = `   64  bad usage
   69  no such job (an unknown id, or its records expired)
   75  NATS could not be reached
`

// commands are the subcommands, named by submit's first argument.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"status":    runStatus,
	"logs":      runLogs,
	"artifacts": runArtifacts,
	"cancel":    runCancel,
	"list":      runList,
}

func runCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	if name == "help" {
		return runHelp(args, stderr)
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "submit: unknown command %q (submit -h lists them)\n", name)
		return exitUsage
	}
	return cmd(ctx, args, stdout, stderr)
}

// runHelp is submit help [CMD].
func runHelp(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = parseFlags([]string{"-h"}, stderr)
		return 0
	}
	if _, ok := commands[args[0]]; !ok {
		fmt.Fprintf(stderr, "submit: help: unknown command %q (submit -h lists them)\n", args[0])
		return exitUsage
	}
	if len(args) > 1 {
		fmt.Fprintln(stderr, "submit: help explains one command at a time")
		return exitUsage
	}
	return commands[args[0]](context.Background(), []string{"-h"}, io.Discard, stderr)
}

func newFlagSet(name, usage string, stderr io.Writer) (*flag.FlagSet, *connOptions) {
	fs := flag.NewFlagSet("submit "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	c := &connOptions{}
	c.register(fs)
	return fs, c
}

// parseArgs parses flags wherever they stand among the arguments (submit logs ID -f as well as
// submit logs -f ID) and returns the other arguments. ok is false when the command is over:
// code is 0 after -h, 64 after bad flags.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (rest []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			fmt.Fprintf(stderr, "%s: bad flags (%s -h explains)\n", fs.Name(), fs.Name())
			return nil, exitUsage, false
		}
		left := fs.Args()
		if consumed := len(args) - len(left); consumed > 0 && args[consumed-1] == "--" {
			return append(rest, left...), 0, true // everything after -- is an argument
		}
		if len(left) == 0 {
			return rest, 0, true
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// parseJobCommand parses the flags and the one job id of a subcommand.
func parseJobCommand(fs *flag.FlagSet, args []string, stderr io.Writer) (id string, code int, ok bool) {
	rest, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return "", code, false
	}
	if len(rest) != 1 {
		fmt.Fprintf(stderr, "%s: want one job id, got %d arguments (%s -h explains)\n", fs.Name(), len(rest), fs.Name())
		return "", exitUsage, false
	}
	id = strings.ToLower(rest[0]) // job ids are stored in lower case
	if !validJobID(id) {
		fmt.Fprintf(stderr, "%s: %q is not a job id (a UUID such as submit --detach prints)\n", fs.Name(), rest[0])
		return "", exitUsage, false
	}
	return id, 0, true
}

func validJobID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// open connects to the queue, telling on stderr why it could not.
func (c *connOptions) open(ctx context.Context, stderr io.Writer) (*nats.Conn, *queue.Queue, int, bool) {
	nc, q, err := c.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		if errors.Is(err, queue.ErrNotSetUp) {
			return nil, nil, exitNotFound, false
		}
		return nil, nil, exitNoNATS, false
	}
	return nc, q, 0, true
}

// queueFailure tells why a queue call failed and maps it to the exit status.
func queueFailure(ctx context.Context, err error, stderr io.Writer) int {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		fmt.Fprintf(stderr, "submit: %v (an unknown id, or its records expired)\n", err)
		return exitNotFound
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "submit: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "submit: %v\n", err)
	return exitNoNATS
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // only types of ours, which always encode
}

// validStates are the states list --state accepts.
var validStates = []queue.State{queue.StateQueued, queue.StateRunning, queue.StateSucceeded, queue.StateFailed,
	queue.StateTimedOut, queue.StateCancelled, queue.StateError}

func validState(s queue.State) bool { return slices.Contains(validStates, s) }
