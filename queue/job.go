package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// JobFormat is the version of the job message format. A worker refuses other versions.
const JobFormat = 1

// Limits on what one job may carry. A job message must fit NATS' default 1 MiB payload.
const (
	MaxScriptBytes = 256 << 10
	MaxEnvBytes    = 64 << 10
	MaxEnvVars     = 256
	MaxTimeout     = 24 * time.Hour
)

// Job is what a submitter publishes on a runner's jobs subject.
type Job struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	Runner string `json:"runner"`
	// Script is the program run in the guest by the runner's interpreter (/bin/sh by default).
	Script string            `json:"script"`
	Env    map[string]string `json:"env,omitempty"`
	// TimeoutSeconds bounds the script's run time; 0 takes the worker's default.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// Inputs, when set, is a tar in the artifacts bucket unpacked into the guest's working
	// directory before the script starts.
	Inputs *Inputs `json:"inputs,omitempty"`
	// MaxArtifactBytes lowers the worker's limit on the total size of the job's artifacts.
	MaxArtifactBytes int64     `json:"max_artifact_bytes,omitempty"`
	SubmittedAt      time.Time `json:"submitted_at"`
}

// NewJob returns a job with a fresh time-ordered id (UUIDv7).
func NewJob(runner, script string) (Job, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Job{}, fmt.Errorf("new job id: %w", err)
	}
	return Job{Format: JobFormat, ID: id.String(), Runner: runner, Script: script, SubmittedAt: time.Now().UTC()}, nil
}

// Timeout is the job's own timeout, or def when the job sets none.
func (j Job) Timeout(def time.Duration) time.Duration {
	if j.TimeoutSeconds > 0 {
		return time.Duration(j.TimeoutSeconds) * time.Second
	}
	return def
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate says what is wrong with a job, naming the field.
func (j Job) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidJob, fmt.Sprintf(format, a...))
	}
	if j.Format != JobFormat {
		return bad("format %d is not supported (this version speaks format %d)", j.Format, JobFormat)
	}
	if !validID(j.ID) {
		return bad("id %q is not a lower-case UUID", j.ID)
	}
	if !ValidRunnerName(j.Runner) {
		return bad("runner name %q must match [a-z0-9][a-z0-9_-]* (at most %d characters)", j.Runner, MaxRunnerNameLen)
	}
	if j.Script == "" {
		return bad("script is empty")
	}
	if len(j.Script) > MaxScriptBytes {
		return bad("script is %d bytes, over the limit of %d", len(j.Script), MaxScriptBytes)
	}
	if !utf8.ValidString(j.Script) {
		return bad("script is not valid UTF-8")
	}
	if len(j.Env) > MaxEnvVars {
		return bad("env has %d variables, over the limit of %d", len(j.Env), MaxEnvVars)
	}
	size := 0
	for k, v := range j.Env {
		if !envName.MatchString(k) {
			return bad("env name %q must match [A-Za-z_][A-Za-z0-9_]*", k)
		}
		if k == "CI" || strings.HasPrefix(k, "CI_") {
			return bad("env name %q: CI and the CI_ prefix are reserved for smallscale", k)
		}
		if strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			return bad("env %s: value must be UTF-8 without NUL bytes", k)
		}
		size += len(k) + len(v) + 2
	}
	if size > MaxEnvBytes {
		return bad("env is %d bytes, over the limit of %d", size, MaxEnvBytes)
	}
	if j.Inputs != nil && (j.Inputs.Object != InputObject(j.ID) || j.Inputs.Size < 0) {
		return bad("inputs.object must be %q with a size of 0 or more", InputObject(j.ID))
	}
	if j.MaxArtifactBytes < 0 {
		return bad("max_artifact_bytes %d is negative", j.MaxArtifactBytes)
	}
	if j.TimeoutSeconds < 0 || time.Duration(j.TimeoutSeconds)*time.Second > MaxTimeout {
		return bad("timeout_seconds %d is outside 0..%d", j.TimeoutSeconds, int(MaxTimeout/time.Second))
	}
	return nil
}

// DecodeJob parses and validates a job message. Unknown fields are refused: a job this worker
// does not fully understand must not run.
func DecodeJob(data []byte) (Job, error) {
	var j Job
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return salvageID(data), fmt.Errorf("%w: not a job message: %v", ErrInvalidJob, err)
	}
	if dec.More() {
		return salvageID(data), fmt.Errorf("%w: trailing data after the job object", ErrInvalidJob)
	}
	if err := j.Validate(); err != nil {
		if !validID(j.ID) {
			j.ID = "" // a refused job carries an id only when it can name the job
		}
		return j, err
	}
	return j, nil
}

// validID accepts a UUID in its canonical lower-case form, so that one job has one spelling.
func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36 && strings.ToLower(id) == id
}

// salvageID reads what it can of a message that is not a valid job, so that the submitter can
// still be told why its job will not run.
func salvageID(data []byte) Job {
	var j struct {
		ID     string `json:"id"`
		Runner string `json:"runner"`
	}
	if json.NewDecoder(bytes.NewReader(data)).Decode(&j) != nil || !validID(j.ID) {
		return Job{}
	}
	return Job{ID: j.ID, Runner: j.Runner}
}

// MaxJobBytes is the largest job message: NATS' default maximum payload.
const MaxJobBytes = 1 << 20

// Encode returns the job message. It does not escape <, > and & (which would grow a script up
// to six-fold) and refuses a message over MaxJobBytes.
func (j Job) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	if buf.Len() > MaxJobBytes {
		return nil, fmt.Errorf("%w: the job message is %d bytes, over the limit of %d (a script full of control characters grows when escaped)", ErrInvalidJob, buf.Len(), MaxJobBytes)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
