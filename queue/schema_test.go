package queue_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/smallscale-ci/smallscale/files"
	"github.com/smallscale-ci/smallscale/queue"
)

// The JSON Schemas of docs/schema describe the protocol for CI systems that do not use this
// package. These tests hold them to what the code really writes and reads: every message and
// status entry of real flows on a real JetStream server must validate, and the job schema must
// refuse what DecodeJob refuses.

type schemas struct{ job, result, status *jsonschema.Schema }

func loadSchemas(t testing.TB) schemas {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	compile := func(name string) *jsonschema.Schema {
		s, err := c.Compile(filepath.Join("..", "docs", "schema", name))
		if err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		return s
	}
	return schemas{compile("job.schema.json"), compile("result.schema.json"), compile("status.schema.json")}
}

// check validates raw JSON against a schema; nil when it conforms.
func check(s *jsonschema.Schema, data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

func mustConform(t *testing.T, s *jsonschema.Schema, what string, data []byte) {
	t.Helper()
	if err := check(s, data); err != nil {
		t.Errorf("%s does not conform to its schema: %v\n%s", what, err, data)
	}
}

// rawReader reads messages and entries byte for byte as smallscale stored them.
type rawReader struct {
	t   *testing.T
	js  jetstream.JetStream
	n   queue.Names
	kv  jetstream.KeyValue
	ctx context.Context
}

func newRawReader(t *testing.T, js jetstream.JetStream, q *queue.Queue) rawReader {
	ctx := ctxT(t)
	kv, err := js.KeyValue(ctx, q.Names().StatusBucket())
	if err != nil {
		t.Fatal(err)
	}
	return rawReader{t: t, js: js, n: q.Names(), kv: kv, ctx: ctx}
}

func (r rawReader) last(stream, subject string) *jetstream.RawStreamMsg {
	r.t.Helper()
	s, err := r.js.Stream(r.ctx, stream)
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(r.ctx, subject)
	if err != nil {
		r.t.Fatalf("last message on %s: %v", subject, err)
	}
	return m
}

func (r rawReader) result(id string) []byte {
	return r.last(r.n.ResultsStream(), r.n.ResultSubject(id)).Data
}

// count is how many messages stream holds on subject (a wildcard adds up its subjects).
func (r rawReader) count(stream, subject string) uint64 {
	r.t.Helper()
	s, err := r.js.Stream(r.ctx, stream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(r.ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		r.t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func (r rawReader) results(id string) uint64 {
	return r.count(r.n.ResultsStream(), r.n.ResultSubject(id))
}

func (r rawReader) status(id string) []byte {
	r.t.Helper()
	e, err := r.kv.Get(r.ctx, id)
	if err != nil {
		r.t.Fatalf("status of %s: %v", id, err)
	}
	return e.Value()
}

// tarOf builds a tar stream; a body of "->target" makes a symbolic link, "|" a FIFO.
func tarOf(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e[1]))}
		switch {
		case strings.HasPrefix(e[1], "->"):
			h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, e[1][2:], 0, 0o777
		case e[1] == "|":
			h.Typeflag, h.Size = tar.TypeFifo, 0
		case strings.HasSuffix(e[0], "/"):
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e[1])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// collect stores a job's output tree the way the worker does and returns the result's lists.
func collect(t *testing.T, ctx context.Context, q *queue.Queue, jobID string, tree []byte) ([]queue.Artifact, []queue.Refused) {
	t.Helper()
	entries, refusals, err := files.Collect(bytes.NewReader(tree), 0, func(path string, r io.Reader) error {
		_, err := q.PutObject(ctx, queue.ArtifactObject(jobID, path), r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		arts    []queue.Artifact
		refused []queue.Refused
	)
	for _, e := range entries {
		a := queue.Artifact{Path: e.Path, Size: e.Size, SHA256: e.SHA256, Mode: e.Mode, Link: e.Link}
		if e.Link == "" {
			a.Object = queue.ArtifactObject(jobID, e.Path)
		}
		arts = append(arts, a)
	}
	for _, r := range refusals {
		refused = append(refused, queue.Refused{Path: r.Path, Reason: r.Reason})
	}
	return arts, refused
}

func TestSchemasAcceptWhatTheCodeWrites(t *testing.T) {
	s := loadSchemas(t)
	q, js := startQueue(t)
	ctx := ctxT(t)
	raw := newRawReader(t, js, q)
	p, err := q.Puller(ctx, "tiny", queue.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	submit := func(job queue.Job) *queue.Delivery {
		t.Helper()
		if err := q.Submit(ctx, job); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.status, "status after Submit", raw.status(job.ID))
		d, err := pull(t, p, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx, "w1"); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.status, "status after Start", raw.status(job.ID))
		return d
	}

	t.Run("failed with env, timeout, inputs, output and artifacts", func(t *testing.T) {
		job, err := queue.NewJob("tiny", "echo \"quoted\" 'and' \\back\\slashes\tand\x01 é\nexit 3\n")
		if err != nil {
			t.Fatal(err)
		}
		job.Env = map[string]string{"FOO": "bar", "MULTI_LINE": "a\nb", "_x": "<&>"}
		job.TimeoutSeconds = 90
		job.MaxArtifactBytes = 1 << 20
		input := tarOf(t, [2]string{"src/main.c", "int main() { return 0; }\n"})
		n, err := q.PutObject(ctx, queue.InputObject(job.ID), bytes.NewReader(input))
		if err != nil {
			t.Fatal(err)
		}
		job.Inputs = &queue.Inputs{Object: queue.InputObject(job.ID), Size: n}
		if err := q.Submit(ctx, job); err != nil {
			t.Fatal(err)
		}

		// The job message as it sits in the stream, before a worker acknowledges it away.
		m := raw.last(q.Names().JobsStream(), q.Names().JobSubject("tiny"))
		mustConform(t, s.job, "job message", m.Data)
		if got := m.Header.Get(jetstream.MsgIDHeader); got != job.ID {
			t.Errorf("job published with %s %q, want the job id", jetstream.MsgIDHeader, got)
		}
		mustConform(t, s.status, "queued status", raw.status(job.ID))

		d, err := pull(t, p, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx, "w1"); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.status, "running status", raw.status(job.ID))
		for _, ph := range []string{queue.PhaseBooting, queue.PhaseRunning} {
			if err := d.Phase(ctx, ph); err != nil {
				t.Fatal(err)
			}
		}
		logs := d.Logs(ctx)
		out := strings.Repeat("some output\n", 7000) // 84 kB: two chunks
		if _, err := logs.Write([]byte(out)); err != nil {
			t.Fatal(err)
		}
		if err := d.Phase(ctx, queue.PhaseCollecting); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.status, "status while collecting", raw.status(job.ID))
		arts, refused := collect(t, ctx, q, job.ID, tarOf(t,
			[2]string{"./", ""},
			[2]string{"./report.txt", "all good\n"},
			[2]string{"./logs/latest", "->../report.txt"},
			[2]string{"./escape", "->../../etc/passwd"},
			[2]string{"../outside", "x"},
			[2]string{"./pipe", "|"},
		))
		if len(arts) != 2 || len(refused) != 3 {
			t.Fatalf("collected %d artifacts and %d refusals, want 2 and 3: %+v %+v", len(arts), len(refused), arts, refused)
		}
		code := 3
		if err := d.Finish(ctx, queue.Result{
			State: queue.StateFailed, ExitCode: &code, Artifacts: arts, Refused: refused,
			LogChunks: logs.Chunks(), LogBytes: logs.Bytes(),
			Timings: queue.Timings{PrepareMS: 40, BootMS: 5000, InputsMS: 30, RunMS: 1200, CollectMS: 20, TeardownMS: 90},
		}); err != nil {
			t.Fatal(err)
		}
		res := raw.result(job.ID)
		mustConform(t, s.result, "failed result", res)
		mustConform(t, s.status, "failed status", raw.status(job.ID))

		// The result announces the output exactly: log_chunks messages of log_bytes in all.
		var r struct {
			LogChunks int   `json:"log_chunks"`
			LogBytes  int64 `json:"log_bytes"`
		}
		if err := json.Unmarshal(res, &r); err != nil {
			t.Fatal(err)
		}
		chunks := raw.count(q.Names().LogsStream(), q.Names().LogSubject(job.ID))
		if r.LogChunks != 2 || uint64(r.LogChunks) != chunks || r.LogBytes != int64(len(out)) {
			t.Errorf("result says %d chunks of %d bytes; the stream holds %d messages, %d bytes were written",
				r.LogChunks, r.LogBytes, chunks, len(out))
		}
	})

	t.Run("succeeded without output", func(t *testing.T) {
		job := newJob(t, "tiny")
		d := submit(job)
		code := 0
		if err := d.Finish(ctx, queue.Result{State: queue.StateSucceeded, ExitCode: &code}); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.result, "succeeded result", raw.result(job.ID))
		mustConform(t, s.status, "succeeded status", raw.status(job.ID))
	})

	t.Run("timed out", func(t *testing.T) {
		job := newJob(t, "tiny")
		job.TimeoutSeconds = 3
		d := submit(job)
		if err := d.Phase(ctx, queue.PhaseBooting); err != nil {
			t.Fatal(err)
		}
		if err := d.Finish(ctx, queue.Result{State: queue.StateTimedOut, Error: "script timed out after 3s",
			Timings: queue.Timings{PrepareMS: 1, BootMS: 2, RunMS: 3000, TeardownMS: 4}}); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.result, "timed_out result", raw.result(job.ID))
		mustConform(t, s.status, "timed_out status", raw.status(job.ID))
	})

	t.Run("error", func(t *testing.T) {
		job := newJob(t, "tiny")
		d := submit(job)
		if err := d.Finish(ctx, queue.Result{State: queue.StateError, Error: "guest agent did not answer within 2m0s"}); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.result, "error result", raw.result(job.ID))
		mustConform(t, s.status, "error status", raw.status(job.ID))
	})

	t.Run("cancelled while queued", func(t *testing.T) {
		job := newJob(t, "tiny")
		if err := q.Submit(ctx, job); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Cancel(ctx, job.ID); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.result, "result of a job cancelled while queued", raw.result(job.ID))
		mustConform(t, s.status, "status of a job cancelled while queued", raw.status(job.ID))
		// The worker that pulls it later drops it: still one result.
		d, err := pull(t, p, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx, "w1"); !errors.Is(err, queue.ErrFinished) {
			t.Fatalf("Start of a cancelled job: %v, want ErrFinished", err)
		}
		if n := raw.results(job.ID); n != 1 {
			t.Errorf("%d results, want 1", n)
		}
	})

	t.Run("cancelled while running", func(t *testing.T) {
		job := newJob(t, "tiny")
		d := submit(job)
		if _, err := q.Cancel(ctx, job.ID); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.status, "status with cancel_requested", raw.status(job.ID))
		if !strings.Contains(string(raw.status(job.ID)), `"cancel_requested":true`) {
			t.Errorf("status after Cancel lacks cancel_requested: %s", raw.status(job.ID))
		}
		if err := d.Finish(ctx, queue.Result{State: queue.StateCancelled, Error: "cancelled while running"}); err != nil {
			t.Fatal(err)
		}
		mustConform(t, s.result, "result of a job cancelled while running", raw.result(job.ID))
		mustConform(t, s.status, "status of a job cancelled while running", raw.status(job.ID))
	})

	t.Run("cancelled before a redelivery started", func(t *testing.T) {
		job := newJob(t, "tiny")
		d := submit(job)
		if _, err := q.Cancel(ctx, job.ID); err != nil {
			t.Fatal(err)
		}
		if err := d.Release(0); err != nil {
			t.Fatal(err)
		}
		d2, err := pull(t, p, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := d2.Start(ctx, "w2"); !errors.Is(err, queue.ErrCancelled) {
			t.Fatalf("Start after cancel: %v, want ErrCancelled", err)
		}
		mustConform(t, s.result, "result of a job cancelled before it started", raw.result(job.ID))
		mustConform(t, s.status, "status of a job cancelled before it started", raw.status(job.ID))
	})

	t.Run("invalid messages", func(t *testing.T) {
		publish := func(data string) {
			t.Helper()
			if _, err := js.Publish(ctx, q.Names().JobSubject("tiny"), []byte(data)); err != nil {
				t.Fatal(err)
			}
			if _, err := pull(t, p, 5*time.Second); !errors.Is(err, queue.ErrInvalidJob) {
				t.Fatalf("Next on %s: %v, want ErrInvalidJob", data, err)
			}
		}
		for name, tmpl := range map[string]string{
			"format 2":      `{"format":2,"id":"%s","runner":"tiny","script":"true"}`,
			"unknown field": `{"format":1,"id":"%s","runner":"tiny","script":"true","priority":9}`,
			"reserved env":  `{"format":1,"id":"%s","runner":"tiny","script":"true","env":{"CI_JOB_ID":"x"}}`,
		} {
			job := newJob(t, "tiny")
			publish(strings.Replace(tmpl, "%s", job.ID, 1))
			res := raw.result(job.ID)
			mustConform(t, s.result, "error result of a message with "+name, res)
			mustConform(t, s.status, "error status of a message with "+name, raw.status(job.ID))
			if !strings.Contains(string(res), `"state":"error"`) {
				t.Errorf("message with %s answered with %s", name, res)
			}
		}
		// Without a readable id there is nobody to answer: the message is only terminated.
		before := raw.results(">")
		publish(`{"format":1,"id":"not-a-uuid","runner":"tiny","script":"true"}`)
		if n := raw.results(">"); n != before {
			t.Errorf("a message without a readable id got a result (%d results, were %d)", n, before)
		}
		if n := pendingJobs(t, js, q); n != 0 {
			t.Errorf("jobs stream holds %d messages, want 0", n)
		}
	})

	t.Run("invalid runner name", func(t *testing.T) {
		// A refused message's result names the runner whose queue it came from, not the
		// message's own (invalid) runner name.
		job := newJob(t, "tiny")
		if _, err := js.Publish(ctx, q.Names().JobSubject("tiny"),
			[]byte(`{"format":1,"id":"`+job.ID+`","runner":"Tiny","script":"true"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := pull(t, p, 5*time.Second); !errors.Is(err, queue.ErrInvalidJob) {
			t.Fatal(err)
		}
		mustConform(t, s.result, "error result of a message with a bad runner name", raw.result(job.ID))
	})
}

// goodJob is a valid job message as a map, for the table tests to change one thing at a time.
func goodJob() map[string]any {
	return map[string]any{
		"format":          1,
		"id":              "0190a5d0-7c5e-7000-8000-000000000001",
		"runner":          "tiny",
		"script":          "echo hi\n",
		"env":             map[string]any{"FOO": "bar"},
		"timeout_seconds": 60,
		"submitted_at":    "2026-12-04T10:00:00Z",
	}
}

type jobCase struct {
	name   string
	change func(j map[string]any)
	raw    string // used instead of the changed goodJob when set
}

func (c jobCase) message(t *testing.T) []byte {
	if c.raw != "" {
		return []byte(c.raw)
	}
	j := goodJob()
	if c.change != nil {
		c.change(j)
	}
	data, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func manyEnv(n int) map[string]any {
	env := map[string]any{}
	for i := range n {
		env["V"+strings.Repeat("x", i%7)+string(rune('A'+i%26))+strings.Repeat("0", i/26)] = "1"
	}
	return env
}

func TestJobSchemaAgreesWithDecodeJob(t *testing.T) {
	s := loadSchemas(t)
	const id = "0190a5d0-7c5e-7000-8000-000000000001"
	set := func(k string, v any) func(map[string]any) { return func(j map[string]any) { j[k] = v } }
	del := func(k string) func(map[string]any) { return func(j map[string]any) { delete(j, k) } }
	env := func(k string, v any) func(map[string]any) {
		return func(j map[string]any) { j["env"] = map[string]any{k: v} }
	}
	accepted := []jobCase{
		{name: "good"},
		{name: "only the required fields", change: func(j map[string]any) {
			for _, k := range []string{"env", "timeout_seconds", "submitted_at"} {
				delete(j, k)
			}
		}},
		{name: "any UUID version", change: set("id", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")},
		{name: "64-character runner", change: set("runner", strings.Repeat("r", 64))},
		{name: "runner with digits, - and _", change: set("runner", "0debian-12_amd64")},
		{name: "empty env", change: set("env", map[string]any{})},
		{name: "env name with underscore and lower case", change: env("_ci_x", "")},
		{name: "env value with newlines and quotes", change: env("X", "a\n\"b\"\t\\")},
		{name: "256 env variables", change: set("env", manyEnv(256))},
		{name: "timeout 0", change: set("timeout_seconds", 0)},
		{name: "timeout 24h", change: set("timeout_seconds", 86400)},
		{name: "inputs", change: set("inputs", map[string]any{"object": id + "/input.tar", "size": 10240})},
		{name: "inputs without size", change: set("inputs", map[string]any{"object": id + "/input.tar"})},
		{name: "max_artifact_bytes", change: set("max_artifact_bytes", 1<<30)},
		{name: "submitted_at with offset and fraction", change: set("submitted_at", "2026-12-04T11:00:00.123456789+01:00")},
		{name: "script of 256 KiB", change: set("script", strings.Repeat("x", queue.MaxScriptBytes))},
		{name: "unicode script", change: set("script", "echo 'héllo wörld ✓'")},
	}
	refused := []jobCase{
		{name: "upper-case id", change: set("id", strings.ToUpper(id))},
		{name: "env name CI", change: env("CI", "x")},
		{name: "not an object", raw: `["format", 1]`},
		{name: "not JSON", raw: `{"format":`},
		{name: "trailing data", raw: `{"format":1,"id":"` + id + `","runner":"tiny","script":"x"}{}`},
		{name: "unknown field", change: set("priority", 9)},
		{name: "unknown field in inputs", change: set("inputs", map[string]any{"object": id + "/input.tar", "size": 1, "sha": "x"})},
		{name: "format 2", change: set("format", 2)},
		{name: "format 0", change: set("format", 0)},
		{name: "format missing", change: del("format")},
		{name: "format as string", change: set("format", "1")},
		{name: "id missing", change: del("id")},
		{name: "id not a UUID", change: set("id", "job-1")},
		{name: "id without dashes", change: set("id", strings.ReplaceAll(id, "-", ""))},
		{name: "id in braces", change: set("id", "{"+id+"}")},
		{name: "id as URN", change: set("id", "urn:uuid:"+id)},
		{name: "runner missing", change: del("runner")},
		{name: "runner empty", change: set("runner", "")},
		{name: "runner upper case", change: set("runner", "Tiny")},
		{name: "runner starting with -", change: set("runner", "-tiny")},
		{name: "runner with a dot", change: set("runner", "a.b")},
		{name: "runner path", change: set("runner", "../etc")},
		{name: "runner of 65 characters", change: set("runner", strings.Repeat("r", 65))},
		{name: "script missing", change: del("script")},
		{name: "script empty", change: set("script", "")},
		{name: "script over 256 KiB", change: set("script", strings.Repeat("x", queue.MaxScriptBytes+1))},
		{name: "script not a string", change: set("script", []string{"echo", "hi"})},
		{name: "env CI_ name", change: env("CI_JOB_ID", "x")},
		{name: "env CI_ prefix only", change: env("CI_", "x")},
		{name: "env name with =", change: env("A=B", "x")},
		{name: "env name starting with a digit", change: env("1X", "x")},
		{name: "env name empty", change: env("", "x")},
		{name: "env name with a dash", change: env("MY-VAR", "x")},
		{name: "env value a number", change: env("X", 1)},
		{name: "env value with NUL", change: env("X", "a\x00b")},
		{name: "257 env variables", change: set("env", manyEnv(257))},
		{name: "env a list", change: set("env", []string{"A=1"})},
		{name: "timeout negative", change: set("timeout_seconds", -1)},
		{name: "timeout over 24h", change: set("timeout_seconds", 86401)},
		{name: "timeout as duration string", change: set("timeout_seconds", "60s")},
		{name: "timeout with a fraction", change: set("timeout_seconds", 1.5)},
		{name: "max_artifact_bytes negative", change: set("max_artifact_bytes", -1)},
		{name: "inputs without object", change: set("inputs", map[string]any{"size": 1})},
		{name: "inputs object of another name", change: set("inputs", map[string]any{"object": id + "/input.tgz", "size": 1})},
		{name: "inputs negative size", change: set("inputs", map[string]any{"object": id + "/input.tar", "size": -1})},
		{name: "submitted_at not a time", change: set("submitted_at", "yesterday")},
		{name: "submitted_at without zone", change: set("submitted_at", "2026-12-04T10:00:00")},
	}
	for _, group := range []struct {
		want  bool
		cases []jobCase
	}{{true, accepted}, {false, refused}} {
		for _, c := range group.cases {
			t.Run(c.name, func(t *testing.T) {
				data := c.message(t)
				_, decErr := queue.DecodeJob(data)
				schErr := check(s.job, data)
				if (decErr == nil) != group.want || (schErr == nil) != group.want {
					t.Errorf("want accepted=%v; DecodeJob: %v; schema: %v\n%.300s", group.want, decErr, schErr, data)
				}
			})
		}
	}
}

// The schema cannot say everything DecodeJob checks, and DecodeJob is lenient where encoding/json
// is. docs/protocol.md lists these differences; this test keeps that list true.
func TestJobSchemaKnownDifferences(t *testing.T) {
	s := loadSchemas(t)
	const id = "0190a5d0-7c5e-7000-8000-000000000001"
	good := `{"format":1,"id":"` + id + `","runner":"tiny","script":"x"`
	tests := []struct {
		name                 string
		data                 string
		schemaOK, decodersOK bool
	}{
		// Only the worker refuses these: send integers without a fraction, count bytes.
		{"integer written with a fraction", good + `,"timeout_seconds":60.0}`, true, false},
		{"integer written with an exponent", good + `,"timeout_seconds":6e1}`, true, false},
		{"env over 64 KiB in all", good + `,"env":{"A":"` + strings.Repeat("x", queue.MaxEnvBytes) + `"}}`, true, false},
		{"script over 256 KiB in bytes, not in characters", `{"format":1,"id":"` + id + `","runner":"tiny","script":"` +
			strings.Repeat("é", queue.MaxScriptBytes/2+1) + `"}`, true, false},
		{"inputs object of another job", good + `,"inputs":{"object":"0190a5d0-7c5e-7000-8000-000000000002/input.tar"}}`, true, false},
		// Only the schema refuses these; do not rely on the worker's leniency.
		{"field name in another case", `{"format":1,"ID":"` + id + `","runner":"tiny","script":"x"}`, false, true},
		{"null for an optional field", good + `,"env":null,"timeout_seconds":null,"submitted_at":null}`, false, true},
		{"null as an env value", good + `,"env":{"X":null}}`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, decErr := queue.DecodeJob([]byte(tt.data))
			schErr := check(s.job, []byte(tt.data))
			if (schErr == nil) != tt.schemaOK || (decErr == nil) != tt.decodersOK {
				t.Errorf("want schema ok=%v, DecodeJob ok=%v; got schema: %v; DecodeJob: %v", tt.schemaOK, tt.decodersOK, schErr, decErr)
			}
		})
	}
}

// docs/examples/nats-submit.sh builds its messages with awk; in --dry-run it prints them.
// DecodeJob must read back exactly the script and environment it was given.
func TestNatsSubmitScriptMessages(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run docs/examples/nats-submit.sh")
	}
	s := loadSchemas(t)
	var ctl strings.Builder
	for c := 1; c < 32; c++ {
		ctl.WriteByte(byte(c))
	}
	scripts := map[string]string{
		"plain":                  "echo hello\nexit 3\n",
		"no final newline":       "echo hello",
		"only newlines":          "\n\n",
		"quotes and backslashes": `echo "a \"b\" \\c" 'd' \n \\` + "\n",
		"control characters":     "printf '" + ctl.String() + "\x7f'\r\n",
		"templates and UTF-8":    "echo '{{.Name}} {{ Count }} héllo ✓ 😀'\n",
		"crlf":                   "echo a\r\necho b\r\n",
		"long line":              strings.Repeat("x", 100000) + "\n",
	}
	env := map[string]string{"FOO": "bar", "QUOTED": `a "b" \c`, "LINES": "1\n2\n", "EMPTY": "", "_u": "ü"}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "job.sh")
			if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"../docs/examples/nats-submit.sh", "--dry-run", "--timeout", "90"}
			for k, v := range env {
				args = append(args, "--env", k+"="+v)
			}
			cmd := exec.Command(bash, append(args, "tiny", path)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("nats-submit.sh --dry-run: %v\n%s", err, stderr.Bytes())
			}
			jobMsg, statusMsg, ok := strings.Cut(strings.TrimSuffix(string(out), "\n"), "\n")
			if !ok {
				t.Fatalf("want two lines, got %q", out)
			}
			mustConform(t, s.job, "nats-submit.sh's job message", []byte(jobMsg))
			mustConform(t, s.status, "nats-submit.sh's status entry", []byte(statusMsg))
			j, err := queue.DecodeJob([]byte(jobMsg))
			if err != nil {
				t.Fatal(err)
			}
			if j.Script != script {
				t.Errorf("script read back as %q, want %q", j.Script, script)
			}
			if len(j.Env) != len(env) {
				t.Errorf("env read back as %q, want %q", j.Env, env)
			}
			for k, v := range env {
				if j.Env[k] != v {
					t.Errorf("env %s read back as %q, want %q", k, j.Env[k], v)
				}
			}
			if j.Runner != "tiny" || j.TimeoutSeconds != 90 || j.SubmittedAt.IsZero() || time.Since(j.SubmittedAt) > time.Minute {
				t.Errorf("job read back as %+v", j)
			}
			if id := j.ID; id[14] != '7' || !strings.Contains(statusMsg, `"job_id":"`+id+`"`) {
				t.Errorf("id %s is not a UUIDv7, or the status entry names another job: %s", id, statusMsg)
			}
		})
	}
	// What a worker would refuse is refused before anything is sent, with submit's exit code 64.
	for name, args := range map[string][]string{
		"bad runner":   {"Tiny", "../examples/hello.sh"},
		"reserved env": {"--env", "CI_X=1", "tiny", "../examples/hello.sh"},
		"bad env name": {"--env", "A-B=1", "tiny", "../examples/hello.sh"},
		"no script":    {"tiny", "/nonexistent"},
		"bad timeout":  {"--timeout", "2m", "tiny", "../examples/hello.sh"},
		"no arguments": {},
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			cmd := exec.Command(bash, append([]string{"../docs/examples/nats-submit.sh", "--dry-run"}, args...)...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 64 {
				t.Errorf("exit %v, want 64\n%s", err, out)
			}
		})
	}
}

// The result and status schemas are strict enough to catch a wrong message.
func TestResultAndStatusSchemasRefuseWrongMessages(t *testing.T) {
	s := loadSchemas(t)
	const id = "0190a5d0-7c5e-7000-8000-000000000001"
	result := func() map[string]any {
		return map[string]any{
			"format": 1, "job_id": id, "runner": "tiny", "state": "failed", "exit_code": 3,
			"worker": "w1", "attempt": 1, "log_chunks": 1, "log_bytes": 12,
			"started_at": "2026-12-04T10:00:00Z", "finished_at": "2026-12-04T10:00:09Z",
			"timings": map[string]any{"prepare_ms": 1, "boot_ms": 2, "run_ms": 3, "teardown_ms": 4},
			"artifacts": []any{
				map[string]any{"path": "a.txt", "size": 1, "mode": 420, "object": id + "/output/a.txt", "sha256": strings.Repeat("0", 64)},
				map[string]any{"path": "b", "size": 0, "mode": 511, "link": "a.txt"},
			},
			"refused": []any{map[string]any{"path": "../x", "reason": "unsafe path"}},
		}
	}
	status := func() map[string]any {
		return map[string]any{
			"job_id": id, "runner": "tiny", "state": "running", "worker": "w1", "attempt": 1,
			"submitted_at": "2026-12-04T10:00:00Z", "started_at": "2026-12-04T10:00:01Z", "updated_at": "2026-12-04T10:00:01Z",
			"phases": []any{map[string]any{"name": "queued", "at": "2026-12-04T10:00:00Z"}, map[string]any{"name": "started", "at": "2026-12-04T10:00:01Z"}},
		}
	}
	tests := []struct {
		name   string
		schema *jsonschema.Schema
		msg    func() map[string]any
		change func(map[string]any)
		ok     bool
	}{
		{"good result", s.result, result, nil, true},
		{"good status", s.status, status, nil, true},
		{"result with an unknown field", s.result, result, func(m map[string]any) { m["host"] = "x" }, false},
		{"result of format 2", s.result, result, func(m map[string]any) { m["format"] = 2 }, false},
		{"result in a state that is not terminal", s.result, result, func(m map[string]any) { m["state"] = "running" }, false},
		{"failed result without exit code", s.result, result, func(m map[string]any) { delete(m, "exit_code") }, false},
		{"failed result with exit code 0", s.result, result, func(m map[string]any) { m["exit_code"] = 0 }, false},
		{"succeeded result with exit code 3", s.result, result, func(m map[string]any) { m["state"] = "succeeded" }, false},
		{"timed out result with an exit code", s.result, result, func(m map[string]any) { m["state"], m["error"] = "timed_out", "late" }, false},
		{"error result without a reason", s.result, result, func(m map[string]any) { m["state"] = "error"; delete(m, "exit_code") }, false},
		{"result without log_chunks", s.result, result, func(m map[string]any) { delete(m, "log_chunks") }, false},
		{"result without timings", s.result, result, func(m map[string]any) { delete(m, "timings") }, false},
		{"result with a bad finished_at", s.result, result, func(m map[string]any) { m["finished_at"] = "now" }, false},
		{"artifact both file and link", s.result, result, func(m map[string]any) {
			m["artifacts"].([]any)[1].(map[string]any)["object"] = id + "/output/b"
		}, false},
		{"artifact with a bad digest", s.result, result, func(m map[string]any) {
			m["artifacts"].([]any)[0].(map[string]any)["sha256"] = "abc"
		}, false},
		{"status with an unknown state", s.status, status, func(m map[string]any) { m["state"] = "paused" }, false},
		{"status with an unknown phase", s.status, status, func(m map[string]any) {
			m["phases"] = []any{map[string]any{"name": "sleeping", "at": "2026-12-04T10:00:00Z"}}
		}, false},
		{"running status without worker", s.status, status, func(m map[string]any) { delete(m, "worker") }, false},
		{"finished status without finished_at", s.status, status, func(m map[string]any) { m["state"] = "cancelled" }, false},
		{"status with cancel_requested as a string", s.status, status, func(m map[string]any) { m["cancel_requested"] = "yes" }, false},
		{"status without updated_at", s.status, status, func(m map[string]any) { delete(m, "updated_at") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg()
			if tt.change != nil {
				tt.change(m)
			}
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := check(tt.schema, data); (err == nil) != tt.ok {
				t.Errorf("want ok=%v, got %v\n%s", tt.ok, err, data)
			}
		})
	}
}
