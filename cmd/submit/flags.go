package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/smallscale-ci/smallscale/queue"
)

const usage = `Usage: submit --runner NAME --script FILE [--env K=V]... [--timeout D] [--detach]

Queues FILE as a job for runner NAME, prints the job id on stderr and the guest's output on
stdout as it is produced, and exits with the script's exit status.

Exit status, when the script's own is not available:
   64  bad flags or input (missing or unreadable script, script over 256 KiB, bad runner name,
       malformed --env): nothing was queued
   69  no worker serves the runner: nothing was queued
   75  NATS could not be reached
  124  the job ran past its timeout (its VM was destroyed)
  125  smallscale could not run the job (VM, guest agent or libvirt failure)
  130  the job was cancelled, or submit was interrupted (the job goes on)

Flags:
`

var errHelp = errors.New("help requested")

type envFlag map[string]string

func (e envFlag) String() string { return "" }

func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	if _, dup := e[k]; dup {
		return fmt.Errorf("%s given twice", k)
	}
	e[k] = v
	return nil
}

type options struct {
	runner, script, natsURL, creds, prefix string
	env                                    envFlag
	timeout                                time.Duration
	detach                                 bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{env: envFlag{}}
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.runner, "runner", "", "runner to run the job on (required)")
	fs.StringVar(&o.script, "script", "", "script to run in the guest; - reads standard input (required)")
	fs.Var(o.env, "env", "NAME=VALUE for the script's environment (repeatable)")
	fs.DurationVar(&o.timeout, "timeout", 0, "the script's time limit, e.g. 90s or 2m (default: the worker's)")
	fs.BoolVar(&o.detach, "detach", false, "print the job id and return once it is queued")
	fs.StringVar(&o.natsURL, "nats", envOr("SMALLSCALE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL (env SMALLSCALE_NATS_URL)")
	fs.StringVar(&o.creds, "creds", os.Getenv("SMALLSCALE_NATS_CREDS"), "NATS credentials file (env SMALLSCALE_NATS_CREDS)")
	fs.StringVar(&o.prefix, "prefix", envOr("SMALLSCALE_PREFIX", queue.DefaultPrefix), "prefix of subjects and streams (env SMALLSCALE_PREFIX)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, errors.New("bad flags (submit -h explains)")
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (submit -h explains)", fs.Arg(0))
	}
	if o.runner == "" {
		return nil, errors.New("--runner is required")
	}
	if o.script == "" {
		return nil, errors.New("--script is required")
	}
	if o.timeout < 0 || o.timeout > queue.MaxTimeout || (o.timeout > 0 && o.timeout < time.Second) {
		return nil, fmt.Errorf("--timeout %s must be between 1s and %s", o.timeout, queue.MaxTimeout)
	}
	return o, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// job reads the script and builds the job, refusing what a worker would refuse.
func (o *options) job() (queue.Job, error) {
	script, err := readScript(o.script)
	if err != nil {
		return queue.Job{}, err
	}
	j, err := queue.NewJob(o.runner, string(script))
	if err != nil {
		return queue.Job{}, err
	}
	if len(o.env) > 0 {
		j.Env = o.env
	}
	j.TimeoutSeconds = int((o.timeout + time.Second - 1) / time.Second)
	if err := j.Validate(); err != nil {
		return queue.Job{}, err
	}
	return j, nil
}

func readScript(path string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("script: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil, fmt.Errorf("script %s is a directory", path)
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, queue.MaxScriptBytes+1))
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", path, err)
	}
	if len(data) > queue.MaxScriptBytes {
		return nil, fmt.Errorf("script %s is over the limit of %d bytes", path, queue.MaxScriptBytes)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("script %s is empty", path)
	}
	return data, nil
}
