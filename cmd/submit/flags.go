package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/smallscale-ci/smallscale/queue"
)

const usage = `Usage:
  submit --runner NAME --script FILE [flags]    queue a job and follow it to its end
  submit status ID                              a job's state, worker and timeline
  submit logs ID [-f]                           a job's output; -f follows it to its end
  submit artifacts ID -o DIR                    download what a job left in $CI_OUTPUT
  submit cancel ID                              cancel a queued or running job
  submit list [--runner R] [--state S]          the newest jobs
  submit help CMD, submit CMD -h                explain one command

Every command takes --json for machine-readable output on stdout, and --nats, --creds and
--prefix to find the queue.

The first form queues FILE as a job for runner NAME, uploads the --input files and directories
for it, prints the job id on stderr and the guest's output on stdout as it is produced, downloads
the job's artifacts into the --artifacts directory, and exits with the script's exit status.
With --json the guest's output goes to stderr and the job's result is printed on stdout as one
JSON object (with --detach: {"job_id": ID}).

Exit status, when the script's own is not available:
    1  an artifact could not be written (a path leading outside the --artifacts directory, a
       checksum mismatch), and the script itself exited 0; the others were written
   64  bad flags or input (missing or unreadable script, script over 256 KiB, bad runner name,
       malformed --env, a missing or unsafe --input, inputs over --max-input): nothing was queued
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

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	if s == "" {
		return errors.New("empty path")
	}
	*l = append(*l, s)
	return nil
}

// sizeFlag is a byte count written as plain bytes or with a K, M, G or T suffix (powers of 1024;
// "KiB", "MB" and the like are read the same).
type sizeFlag int64

func (s *sizeFlag) String() string { return formatSize(int64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	num := strings.TrimSpace(v)
	unit := strings.TrimLeft(num, "0123456789")
	num = num[:len(num)-len(unit)]
	shift := 0
	switch strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "b"), "i")) {
	case "":
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	default:
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with K, M, G or T", v)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with K, M, G or T", v)
	}
	return n << shift, nil
}

func formatSize(n int64) string {
	for _, u := range []struct {
		shift int
		name  string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}

// humanSize is for messages: 5.0 MiB rather than 5242880.
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

const defaultMaxInput = 1 << 30

type options struct {
	connOptions
	runner, script string
	env            envFlag
	timeout        time.Duration
	detach         bool
	inputs         listFlag
	artifacts      string
	maxInput       sizeFlag
	maxArtifacts   sizeFlag
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{env: envFlag{}, maxInput: defaultMaxInput}
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.runner, "runner", "", "runner to run the job on (required)")
	fs.StringVar(&o.script, "script", "", "script to run in the guest; - reads standard input (required)")
	fs.Var(o.env, "env", "NAME=VALUE for the script's environment (repeatable)")
	fs.DurationVar(&o.timeout, "timeout", 0, "the script's time limit, e.g. 90s or 2m (default: the worker's)")
	fs.BoolVar(&o.detach, "detach", false, "print the job id and return once it is queued")
	fs.Var(&o.inputs, "input", "file or directory the script finds under its base name in its working\ndirectory (repeatable; links must stay inside their tree)")
	fs.Var(&o.maxInput, "max-input", "limit on the inputs' packed size (file contents plus 512 bytes a file),\ne.g. 200M or 2G")
	fs.StringVar(&o.artifacts, "artifacts", "", "directory to download what the job left in $CI_OUTPUT into (created if missing)")
	fs.Var(&o.maxArtifacts, "max-artifacts", "lowers the worker's limit on the total size of the job's artifacts, e.g. 500M")
	o.connOptions.register(fs)
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
	if o.detach && o.artifacts != "" {
		return nil, errors.New("--artifacts waits for the job's end, --detach does not (download them later with submit artifacts ID -o DIR)")
	}
	return o, nil
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
	j.MaxArtifactBytes = int64(o.maxArtifacts)
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
