package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/smallscale-ci/smallscale/queue"
)

// detach queues a job with submit --detach --json and returns its id.
func (tq *testQueue) detach(t *testing.T, runner string) string {
	t.Helper()
	code, stdout, stderr := tq.submit(t, "--runner", runner, "--script", write(t, "s.sh", "true\n"), "--detach", "--json")
	if code != 0 {
		t.Fatalf("submit --detach: exit %d, stderr %q", code, stderr)
	}
	id := decode[map[string]string](t, stdout)["job_id"]
	if !validJobID(id) {
		t.Fatalf("submit --detach --json printed %q", stdout)
	}
	return id
}

func (tq *testQueue) status(t *testing.T, id string) queue.Status {
	t.Helper()
	code, stdout, stderr := tq.submit(t, "status", id, "--json")
	if code != 0 {
		t.Fatalf("status %s: exit %d, stderr %q", id, code, stderr)
	}
	return decode[queue.Status](t, stdout)
}

func (tq *testQueue) list(t *testing.T, args ...string) []string {
	t.Helper()
	code, stdout, stderr := tq.submit(t, append([]string{"list", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("list %v: exit %d, stderr %q", args, code, stderr)
	}
	var ids []string
	for _, st := range decode[[]queue.Status](t, stdout) {
		ids = append(ids, st.JobID)
	}
	return ids
}

func phaseNames(st queue.Status) []string {
	var names []string
	for _, p := range st.Phases {
		names = append(names, p.Name)
	}
	return names
}

func TestStatusAndListFollowAJobsLife(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	tq.worker(t, "other")
	ctx := testCtx(t)

	id := tq.detach(t, "tiny")
	st := tq.status(t, id)
	if st.JobID != id || st.Runner != "tiny" || st.State != queue.StateQueued || !slices.Equal(phaseNames(st), []string{"queued"}) {
		t.Fatalf("status of a queued job = %+v", st)
	}
	if ids := tq.list(t); !slices.Equal(ids, []string{id}) {
		t.Fatalf("list = %v, want [%s]", ids, id)
	}

	d := w.take(t)
	if d.Job.ID != id {
		t.Fatalf("worker took %s, want %s", d.Job.ID, id)
	}
	for _, p := range []string{queue.PhaseBooting, queue.PhaseRunning} {
		if err := d.Phase(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	st = tq.status(t, id)
	if st.State != queue.StateRunning || st.Worker != "w1" || st.Attempt != 1 || st.ExitCode != nil ||
		!slices.Equal(phaseNames(st), []string{"queued", "started", "booting", "running"}) {
		t.Fatalf("status of a running job = %+v", st)
	}
	code, human, stderr := tq.submit(t, "status", strings.ToUpper(id)) // ids are taken in either case
	for _, want := range []string{"state      running\n", "worker     w1\n", "attempt    1\n", "timeline", "  booting "} {
		if code != 0 || !strings.Contains(human, want) {
			t.Fatalf("status: exit %d, stdout %q missing %q (stderr %q)", code, human, want, stderr)
		}
	}

	logs := d.Logs(ctx)
	writeLog(t, logs, []byte("hi\n"))
	a := tq.putArtifact(t, id, "out.txt", 0o644, []byte("result"))
	finish(t, d, logs, 0, queue.Result{State: queue.StateSucceeded, ExitCode: new(0), Artifacts: []queue.Artifact{a},
		Refused: []queue.Refused{{Path: "fifo", Reason: "not a regular file"}}})
	st = tq.status(t, id)
	if st.State != queue.StateSucceeded || st.ExitCode == nil || *st.ExitCode != 0 || st.FinishedAt.IsZero() ||
		!slices.Equal(phaseNames(st), []string{"queued", "started", "booting", "running", "succeeded"}) {
		t.Fatalf("status of a finished job = %+v", st)
	}
	code, human, _ = tq.submit(t, "status", id)
	for _, want := range []string{"state      succeeded\n", "exit       0\n", "artifacts  1 (1 refused by the worker)\n", "  succeeded "} {
		if code != 0 || !strings.Contains(human, want) {
			t.Fatalf("status: exit %d, stdout %q missing %q", code, human, want)
		}
	}

	// More jobs: list shows the newest first, and filters.
	other := tq.detach(t, "other")
	newest := tq.detach(t, "tiny")
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{nil, []string{newest, other, id}},
		{[]string{"--runner", "tiny"}, []string{newest, id}},
		{[]string{"--runner", "other"}, []string{other}},
		{[]string{"--state", "succeeded"}, []string{id}},
		{[]string{"--state", "queued", "--runner", "tiny"}, []string{newest}},
		{[]string{"--state", "failed"}, nil},
		{[]string{"--runner", "nosuch"}, nil},
		{[]string{"--limit", "1"}, []string{newest}},
		{[]string{"--limit", "2"}, []string{newest, other}},
	} {
		if got := tq.list(t, tt.args...); !slices.Equal(got, tt.want) {
			t.Errorf("list %v = %v, want %v", tt.args, got, tt.want)
		}
	}
	code, table, stderr := tq.submit(t, "list", "--runner", "tiny")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	row := regexp.MustCompile(`^` + id + `\s+tiny\s+succeeded\s+w1\s+0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d+s$`)
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "JOB ID") || !strings.HasPrefix(lines[1], newest) || !row.MatchString(lines[2]) {
		t.Fatalf("list: exit %d, stdout\n%s\nstderr %q", code, table, stderr)
	}
	if code, stdout, _ := tq.submit(t, "list", "--state", "error", "--json"); code != 0 || stdout != "[]\n" {
		t.Fatalf("empty list --json: exit %d, %q", code, stdout)
	}
	for _, bad := range [][]string{{"--state", "done"}, {"--limit", "0"}, {"--runner", "Bad/Name"}, {"extra"}} {
		if code, _, stderr := tq.submit(t, append([]string{"list"}, bad...)...); code != exitUsage {
			t.Errorf("list %v: exit %d, stderr %q; want %d", bad, code, stderr, exitUsage)
		}
	}
}

func TestCancelQueuedJobNeverRuns(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	ctx := testCtx(t)
	id := tq.detach(t, "tiny")

	code, stdout, stderr := tq.submit(t, "cancel", id)
	if code != 0 || stdout != "job "+id+" cancelled\n" {
		t.Fatalf("cancel: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if st := tq.status(t, id); st.State != queue.StateCancelled || !st.CancelRequested {
		t.Fatalf("status after cancel = %+v", st)
	}
	res, err := tq.q.Result(ctx, id)
	if err != nil || res.State != queue.StateCancelled {
		t.Fatalf("result after cancel = %+v, %v", res, err)
	}
	d := w.next(t)
	if err := d.Start(ctx, "w1"); !errors.Is(err, queue.ErrCancelled) && !errors.Is(err, queue.ErrFinished) {
		t.Fatalf("Start of a cancelled job: %v, want ErrCancelled or ErrFinished", err)
	}
	if st := tq.status(t, id); st.State != queue.StateCancelled || st.Worker != "" {
		t.Fatalf("status after the worker dropped it = %+v", st)
	}

	code, stdout, stderr = tq.submit(t, "cancel", id)
	if code != exitFailed || stdout != "" || !strings.Contains(stderr, "already finished (cancelled)") {
		t.Fatalf("second cancel: exit %d, stdout %q, stderr %q; want %d", code, stdout, stderr, exitFailed)
	}
	// logs -f of a cancelled job maps like the main form.
	if code, _, _ := tq.submit(t, "logs", id, "-f"); code != exitInterrupted {
		t.Fatalf("logs -f of a cancelled job: exit %d, want %d", code, exitInterrupted)
	}
}

func TestCancelRunningAndFinishedJobs(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	ctx := testCtx(t)
	id := tq.detach(t, "tiny")
	d := w.take(t)
	cancelled, err := d.CancelWatch(ctx)
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := tq.submit(t, "cancel", id, "--json")
	st := decode[queue.Status](t, stdout)
	if code != 0 || st.State != queue.StateRunning || !st.CancelRequested {
		t.Fatalf("cancel --json of a running job: exit %d, %+v, stderr %q", code, st, stderr)
	}
	select {
	case <-cancelled:
	case <-ctx.Done():
		t.Fatal("the worker never saw the cancel")
	}
	if _, human, _ := tq.submit(t, "status", id); !strings.Contains(human, "running (cancel requested)") {
		t.Fatalf("status: %q", human)
	}
	finish(t, d, nil, 0, queue.Result{State: queue.StateCancelled, Error: "cancelled while running"})

	code, stdout, stderr = tq.submit(t, "cancel", id, "--json")
	if code != exitFailed || decode[queue.Status](t, stdout).State != queue.StateCancelled || !strings.Contains(stderr, "nothing to cancel") {
		t.Fatalf("cancel of a finished job: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// A job that succeeded cannot be cancelled either.
	id = tq.detach(t, "tiny")
	d = w.take(t)
	finish(t, d, nil, 0, queue.Result{})
	code, _, stderr = tq.submit(t, "cancel", id)
	if code != exitFailed || !strings.Contains(stderr, "job "+id+" already finished (succeeded): nothing to cancel") {
		t.Fatalf("cancel of a succeeded job: exit %d, stderr %q", code, stderr)
	}
}

func TestUnknownAndMalformedJobIDs(t *testing.T) {
	tq := startQueue(t)
	unknown := uuid.Must(uuid.NewV7()).String()
	for _, cmd := range [][]string{{"status"}, {"logs"}, {"logs", "-f"}, {"cancel"}, {"artifacts", "-o", t.TempDir()}} {
		args := append(slices.Clone(cmd), unknown)
		if code, _, stderr := tq.submit(t, args...); code != exitNotFound || !strings.Contains(stderr, unknown) {
			t.Errorf("%v: exit %d, stderr %q; want %d naming the id", args, code, stderr, exitNotFound)
		}
		for _, bad := range [][]string{{"not-a-uuid"}, {}, {unknown, unknown}} {
			args := append(slices.Clone(cmd), bad...)
			if code, _, stderr := tq.submit(t, args...); code != exitUsage {
				t.Errorf("%v: exit %d, stderr %q; want %d", args, code, stderr, exitUsage)
			}
		}
	}
	if code, _, stderr := tq.submit(t, "logs", unknown, "--json"); code != exitUsage || !strings.Contains(stderr, "raw bytes") {
		t.Errorf("logs --json: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := tq.submit(t, "artifacts", unknown); code != exitUsage || !strings.Contains(stderr, "-o DIR is required") {
		t.Errorf("artifacts without -o: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := tq.submit(t, "frobnicate"); code != exitUsage || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, stderr)
	}
}

func TestSubcommandsOnUnreachableNATS(t *testing.T) {
	id := uuid.Must(uuid.NewV7()).String()
	for _, args := range [][]string{{"status", id}, {"logs", id}, {"cancel", id}, {"list"}, {"artifacts", id, "-o", t.TempDir()}} {
		var out, errb bytes.Buffer
		code := run(testCtx(t), append(args, "--nats", "nats://127.0.0.1:1"), &out, &errb)
		if code != exitNoNATS || !strings.Contains(errb.String(), "cannot reach NATS") {
			t.Errorf("%v: exit %d, stderr %q; want %d", args, code, errb.String(), exitNoNATS)
		}
	}
}

func TestHelpOfEachCommand(t *testing.T) {
	for name := range commands {
		var out, errb bytes.Buffer
		if code := run(testCtx(t), []string{name, "-h"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "Usage: submit "+name) ||
			!strings.Contains(errb.String(), "Exit status") {
			t.Errorf("%s -h: exit %d, stderr %q", name, code, errb.String())
		}
		errb.Reset()
		if code := run(testCtx(t), []string{"help", name}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "Usage: submit "+name) {
			t.Errorf("help %s: exit %d, stderr %q", name, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(testCtx(t), []string{"-h"}, &out, &errb); code != 0 {
		t.Fatal(code)
	}
	for name := range commands {
		if !strings.Contains(errb.String(), "submit "+name+" ") {
			t.Errorf("submit -h does not list %s", name)
		}
	}
}

// logs prints the output byte for byte, whatever it holds: lines, a chunk without a newline,
// bytes that are not UTF-8, chunks over the largest message.
func TestLogsAfterTheFact(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	ctx := testCtx(t)
	id := tq.detach(t, "tiny")
	d := w.take(t)

	if code, stdout, stderr := tq.submit(t, "logs", id); code != 0 || stdout != "" {
		t.Fatalf("logs before any output: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	big := make([]byte, 3*queue.MaxLogChunk/2)
	rand.Read(big)
	chunks := [][]byte{[]byte("line one\n"), []byte("no newline"), {0, 0xff, 0xfe, '\r', '\n', 0x80}, big, []byte("tail")}
	logs := d.Logs(ctx)
	writeLog(t, logs, chunks[:3]...)
	if code, stdout, _ := tq.submit(t, "logs", id); code != 0 || stdout != string(bytes.Join(chunks[:3], nil)) {
		t.Fatalf("logs of a running job: exit %d, %q", code, stdout)
	}
	writeLog(t, logs, chunks[3:]...)
	finish(t, d, logs, 7, queue.Result{})

	code, stdout, stderr := tq.submit(t, "logs", id)
	if want := bytes.Join(chunks, nil); code != 0 || !bytes.Equal([]byte(stdout), want) {
		t.Fatalf("logs: exit %d, %d bytes, want %d identical; stderr %q", code, len(stdout), len(want), stderr)
	}
}

func TestLogsFollowRunningJob(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	ctx := testCtx(t)
	id := tq.detach(t, "tiny")
	d := w.take(t)
	logs := d.Logs(ctx)
	writeLog(t, logs, []byte("before\n"))

	var out syncBuffer
	done := tq.submitAsync(t, &out, "logs", "-f", id)
	out.waitFor(t, "before\n") // the follower is attached
	writeLog(t, logs, []byte("after, "), []byte("no newline"))
	select {
	case o := <-done:
		t.Fatalf("logs -f returned before the job ended: %+v", o)
	default:
	}
	finish(t, d, logs, 3, queue.Result{})
	o := wait(t, done)
	if o.code != 3 || o.stdout != "before\nafter, no newline" || !strings.Contains(o.stderr, "failed (exit 3)") {
		t.Fatalf("logs -f: exit %d, stdout %q, stderr %q; want 3", o.code, o.stdout, o.stderr)
	}

	// After the fact, -f replays and maps the outcome the same way.
	for state, want := range map[queue.State]int{queue.StateTimedOut: exitTimedOut, queue.StateError: exitError, queue.StateSucceeded: 0} {
		id := tq.detach(t, "tiny")
		d := w.take(t)
		var code *int
		if state == queue.StateSucceeded {
			code = new(0)
		}
		finish(t, d, nil, 0, queue.Result{State: state, ExitCode: code, Error: "for the test"})
		if got, _, stderr := tq.submit(t, "logs", id, "-f"); got != want {
			t.Errorf("logs -f of a %s job: exit %d, want %d (stderr %q)", state, got, want, stderr)
		}
	}
}
