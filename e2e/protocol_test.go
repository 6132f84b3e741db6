package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/smallscale-ci/smallscale/queue"
)

// These tests speak the protocol of docs/protocol.md without the submit binary: they run
// docs/examples/nats-submit.sh, which uses only the nats command-line tool.

// natsCLI finds the nats tool on PATH or where `go install` puts it. CI installs it; a missing
// tool fails the test rather than skipping it.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	var dirs []string
	if gobin, err := exec.Command("go", "env", "GOBIN").Output(); err == nil && len(bytes.TrimSpace(gobin)) > 0 {
		dirs = append(dirs, string(bytes.TrimSpace(gobin)))
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(string(bytes.TrimSpace(gopath))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "nats"); isExecutable(p) {
			return p
		}
	}
	t.Fatalf("the nats CLI is missing (looked on PATH and in %v); install it with\n"+
		"  go install github.com/nats-io/natscli/nats@v0.5.0", dirs)
	return ""
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// natsSubmitRun is one run of docs/examples/nats-submit.sh.
type natsSubmitRun struct {
	stdout, stderr string
	code           int
	jobID          string
}

// natsSubmit runs the example script against the test worker, the server given by NATS_URL.
func natsSubmit(t *testing.T, args ...string) natsSubmitRun {
	t.Helper()
	cli := natsCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"../docs/examples/nats-submit.sh"}, args...)...)
	cmd.Env = append(os.Environ(),
		"NATS_URL="+env.natsURL,
		"PATH="+filepath.Dir(cli)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+t.TempDir(), // no nats contexts of whoever runs the tests
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("nats-submit.sh did not run: %v", err)
	}
	r := natsSubmitRun{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
	if _, rest, ok := strings.Cut(r.stderr, "nats-submit: job "); ok {
		r.jobID, _, _ = strings.Cut(rest, " ")
	}
	return r
}

// rawResult is the job's result message as the worker stored it.
func rawResult(t *testing.T, jobID string) []byte {
	t.Helper()
	qc, err := openQueue()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := qc.js.Stream(ctx, qc.q.Names().ResultsStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, qc.q.Names().ResultSubject(jobID))
	if err != nil {
		t.Fatalf("result of %s: %v", jobID, err)
	}
	return m.Data
}

func checkResultSchema(t *testing.T, data []byte) {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile("../docs/schema/result.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err == nil {
		err = sch.Validate(v)
	}
	if err != nil {
		t.Errorf("the worker's result does not conform to docs/schema/result.schema.json: %v\n%s", err, data)
	}
}

func TestProtocolNatsSubmitMirrorsExitCode(t *testing.T) {
	t.Parallel()
	r := natsSubmit(t, "tiny", scriptFile(t, "echo about to fail\necho on stderr >&2\nexit 3\n"))
	if r.code != 3 {
		t.Fatalf("nats-submit.sh exited %d, want 3\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if r.stdout != "about to fail\non stderr\n" {
		t.Errorf("output = %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "queued on runner tiny") || !strings.Contains(r.stderr, "failed (exit 3)") {
		t.Errorf("stderr = %q", r.stderr)
	}
	checkResultSchema(t, rawResult(t, r.jobID))
	res := result(t, r.jobID)
	if res.State != queue.StateFailed || res.ExitCode == nil || *res.ExitCode != 3 || res.Worker != "e2e" {
		t.Errorf("result = %+v", res)
	}
	// The status entry the script created is the one the worker carried on.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := env.q.Status(ctx, r.jobID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != queue.StateFailed || len(st.Phases) < 3 || st.Phases[0].Name != string(queue.StateQueued) || st.Phases[1].Name != queue.PhaseStarted {
		t.Errorf("status = %+v", st)
	}
	assertNoLeftovers(t, r.jobID)
}

func TestProtocolNatsSubmitOutputAndEnvironment(t *testing.T) {
	t.Parallel()
	script := "printf '%s|%s|%s|%s\\n' \"$GREETING\" \"$CI_RUNNER\" \"$CI_JOB_ID\" \"$CI\"\n" +
		"i=0; while [ $i -lt 3000 ]; do echo \"line $i of the many lines that make the output span several chunks\"; i=$((i+1)); done\n" +
		"printf 'tab\\there \"quotes\" \\\\back {{x}} é no newline at the end'\n"
	r := natsSubmit(t, "--env", "GREETING=bonjour \"à\" tous", "--timeout", "300", "tiny", scriptFile(t, script))
	if r.code != 0 {
		t.Fatalf("nats-submit.sh exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	var lines strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&lines, "line %d of the many lines that make the output span several chunks\n", i)
	}
	want := "bonjour \"à\" tous|tiny|" + r.jobID + "|true\n" + lines.String() +
		"tab\there \"quotes\" \\back {{x}} é no newline at the end"
	if r.stdout != want {
		t.Errorf("output differs: %d bytes, want %d\nhead: %q\ntail: %q", len(r.stdout), len(want),
			r.stdout[:min(len(r.stdout), 200)], r.stdout[max(0, len(r.stdout)-200):])
	}
	res := result(t, r.jobID)
	t.Logf("output: %d bytes in %d chunks", res.LogBytes, res.LogChunks)
	if res.LogChunks < 2 {
		t.Errorf("the output came in %d chunks; the test wants several", res.LogChunks)
	}
	checkResultSchema(t, rawResult(t, r.jobID))
	assertNoLeftovers(t, r.jobID)
}

func TestProtocolNatsSubmitRefusesUnservedRunner(t *testing.T) {
	t.Parallel()
	r := natsSubmit(t, "nosuch", "../examples/hello.sh")
	if r.code != 69 || r.jobID != "" {
		t.Fatalf("nats-submit.sh exited %d, want 69 before queueing anything\nstderr:\n%s", r.code, r.stderr)
	}
}
