package main

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/smallscale-ci/smallscale/queue"
)

// The main form end to end, with the test as the worker: inputs go up, output comes back as it is
// written, artifacts land in --artifacts, identical and with their modes.
func TestMainFormUploadsFollowsAndDownloads(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	ctx := testCtx(t)
	src := filepath.Join(t.TempDir(), "src")
	mkfile(t, src, "main.c", 0o644, "int main(void) { return 0; }\n")
	out := filepath.Join(t.TempDir(), "out", "nested") // created on the way

	var stdout syncBuffer
	done := tq.submitAsync(t, &stdout, "--runner", "tiny", "--script", write(t, "build.sh", "make\n"),
		"--input", src, "--artifacts", out, "--max-artifacts", "64M")
	d := w.take(t)
	if d.Job.MaxArtifactBytes != 64<<20 || d.Job.Inputs == nil {
		t.Fatalf("job = %+v", d.Job)
	}
	r, err := tq.q.GetObject(ctx, d.Job.Inputs.Object)
	if err != nil {
		t.Fatal(err)
	}
	if got := readTar(t, r)["src/main.c"].body; got != "int main(void) { return 0; }\n" {
		t.Fatalf("input src/main.c = %q", got)
	}
	r.Close()

	logs := d.Logs(ctx)
	writeLog(t, logs, []byte("compiling\n"))
	stdout.waitFor(t, "compiling\n") // streamed while the job runs
	big := make([]byte, 5<<20)
	rand.Read(big)
	arts := []queue.Artifact{
		tq.putArtifact(t, d.Job.ID, "big.bin", 0o644, big),
		tq.putArtifact(t, d.Job.ID, "bin/tool", 0o755, []byte("#!/bin/sh\n")),
		tq.putArtifact(t, d.Job.ID, "empty", 0o600, nil),
		{Path: "latest", Link: "bin/tool", Mode: 0o777},
	}
	writeLog(t, logs, []byte("done"))
	finish(t, d, logs, 0, queue.Result{State: queue.StateSucceeded, ExitCode: new(0), Artifacts: arts,
		Refused: []queue.Refused{{Path: "dev/null", Reason: "neither a file, a directory nor a link"}}})

	o := wait(t, done)
	if o.code != 0 || o.stdout != "compiling\ndone" {
		t.Fatalf("exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	for _, want := range []string{`warning: the worker did not collect "dev/null"`, "4 artifacts written to " + out} {
		if !strings.Contains(o.stderr, want) {
			t.Errorf("stderr %q lacks %q", o.stderr, want)
		}
	}
	checkArtifacts(t, out, big)

	// submit artifacts fetches the same again, later, anywhere.
	again := filepath.Join(t.TempDir(), "again")
	code, stdout2, stderr := tq.submit(t, "artifacts", d.Job.ID, "-o", again, "--json")
	if code != 0 {
		t.Fatalf("artifacts: exit %d, stderr %q", code, stderr)
	}
	checkArtifacts(t, again, big)
	got := decode[[]writtenFile](t, stdout2)
	want := []writtenFile{{Path: "big.bin", Size: 5 << 20, SHA256: sha(big)}, {Path: "bin/tool", Size: 10, SHA256: sha([]byte("#!/bin/sh\n"))},
		{Path: "empty", SHA256: sha(nil)}, {Path: "latest", Link: "bin/tool"}}
	if !slices.Equal(got, want) {
		t.Fatalf("artifacts --json = %+v, want %+v", got, want)
	}
	code, plain, _ := tq.submit(t, "artifacts", d.Job.ID, "-o", again)
	if code != 0 || plain != "big.bin\nbin/tool\nempty\nlatest\n" {
		t.Fatalf("artifacts: exit %d, stdout %q", code, plain)
	}
}

func checkArtifacts(t *testing.T, dir string, big []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, "big.bin"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big.bin: %d bytes, identical %v, %v", len(got), bytes.Equal(got, big), err)
	}
	for name, mode := range map[string]fs.FileMode{"big.bin": 0o644, "bin/tool": 0o755, "empty": 0o600} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode() != mode {
			t.Errorf("%s: %v, %v; want mode %v", name, st.Mode(), err, mode)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "latest")); err != nil || l != "bin/tool" {
		t.Errorf("latest -> %q, %v", l, err)
	}
}

// With --json the result alone is on stdout, the guest's output on stderr.
func TestMainFormJSON(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	var stdout syncBuffer
	done := tq.submitAsync(t, &stdout, "--runner", "tiny", "--script", write(t, "s.sh", "exit 5\n"), "--json")
	d := w.take(t)
	logs := d.Logs(testCtx(t))
	writeLog(t, logs, []byte("guest says hi\n"))
	finish(t, d, logs, 5, queue.Result{})
	o := wait(t, done)
	res := decode[queue.Result](t, o.stdout)
	if o.code != 5 || res.JobID != d.Job.ID || res.State != queue.StateFailed || res.ExitCode == nil || *res.ExitCode != 5 ||
		res.Worker != "w1" || res.LogChunks != 1 || !strings.Contains(o.stderr, "guest says hi\n") {
		t.Fatalf("exit %d, result %+v, stderr %q", o.code, res, o.stderr)
	}
}

// A result may name anything; the download writes nothing outside its directory, says what it
// refused, and writes the rest.
func TestHostileArtifactsAreRefused(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	base := t.TempDir()
	dir := filepath.Join(base, "out")
	outside := filepath.Join(base, "somewhere-outside")
	for _, d := range []string{dir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	symlink(t, outside, filepath.Join(dir, "esc")) // left in DIR by someone, leading out
	etcTarget := "/etc/x-smallscale-" + filepath.Base(base)

	id := tq.detach(t, "tiny")
	d := w.take(t)
	content := []byte("payload\n")
	put := func(path string) queue.Artifact {
		a := tq.putArtifact(t, id, "safe-name-"+strings.NewReplacer("/", "_", ".", "_").Replace(path), 0o644, content)
		a.Path = path
		return a
	}
	corrupt := put("corrupt.txt")
	corrupt.SHA256 = sha([]byte("something else"))
	gone := put("gone.txt")
	gone.Object = queue.ArtifactObject(id, "never-stored")
	arts := []queue.Artifact{
		put("good.txt"),
		put("../x"),
		put(filepath.Join(base, "abs", "x")),
		put(etcTarget),
		{Path: "l", Link: "/", Mode: 0o777},
		{Path: "l2", Link: "../..", Mode: 0o777},
		put("esc/file"),
		// Each link alone stays inside; together they lead to base.
		{Path: "t", Link: "s/..", Mode: 0o777},
		{Path: "s", Link: ".", Mode: 0o777},
		put("t/escaped"),
		{Path: "via-esc", Link: "esc/file", Mode: 0o777},
		corrupt,
		gone,
		{Path: "sub/ok-link", Link: "../good.txt", Mode: 0o777},
	}
	finish(t, d, nil, 0, queue.Result{Artifacts: arts})

	code, stdout, stderr := tq.submit(t, "artifacts", id, "-o", dir)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitFailed, stderr)
	}
	for _, name := range []string{"../x", filepath.Join(base, "abs", "x"), etcTarget, "l", "l2", "esc/file", "t", "t/escaped", "via-esc", "corrupt.txt", "gone.txt"} {
		if !strings.Contains(stderr, `artifact "`+name+`" refused`) {
			t.Errorf("stderr does not name %q as refused:\n%s", name, stderr)
		}
	}
	if !strings.Contains(stderr, "11 of 14 artifacts refused") {
		t.Errorf("stderr lacks the count:\n%s", stderr)
	}
	if stdout != "good.txt\ns\nsub/ok-link\n" {
		t.Errorf("written: %q", stdout)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "sub/ok-link")); err != nil || !bytes.Equal(got, content) {
		t.Errorf("sub/ok-link reads %q, %v", got, err)
	}

	// Everything under base, and nothing else: the would-be targets do not exist.
	var found []string
	err := filepath.WalkDir(base, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		found = append(found, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".", "out", "out/esc", "out/good.txt", "out/s", "out/sub", "out/sub/ok-link", "somewhere-outside"}
	if !slices.Equal(found, want) {
		t.Errorf("files under %s:\n got %v\nwant %v", base, found, want)
	}
	for _, p := range []string{etcTarget, "/x", "/escaped", filepath.Join(outside, "file")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}

// When an artifact is refused, the main form exits 1 if the script succeeded, and with the
// script's own status if it did not.
func TestMainFormExitStatusWithRefusedArtifacts(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	for _, script := range []int{0, 3} {
		out := t.TempDir()
		var stdout syncBuffer
		done := tq.submitAsync(t, &stdout, "--runner", "tiny", "--script", write(t, "s.sh", "true\n"), "--artifacts", out)
		d := w.take(t)
		good := tq.putArtifact(t, d.Job.ID, "good", 0o644, []byte("g"))
		finish(t, d, nil, script, queue.Result{Artifacts: []queue.Artifact{{Path: "up", Link: "..", Mode: 0o777}, good}})
		o := wait(t, done)
		want := script
		if script == 0 {
			want = exitFailed
		}
		if o.code != want || !strings.Contains(o.stderr, `artifact "up" refused`) {
			t.Errorf("script exit %d: submit exit %d, want %d; stderr %q", script, o.code, want, o.stderr)
		}
		if _, err := os.Stat(filepath.Join(out, "good")); err != nil {
			t.Errorf("the good artifact was not written: %v", err)
		}
	}
}

func TestArtifactsOfARunningJob(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	id := tq.detach(t, "tiny")
	w.take(t)
	code, _, stderr := tq.submit(t, "artifacts", id, "-o", t.TempDir())
	if code != exitFailed || !strings.Contains(stderr, "is running: its artifacts arrive with its result") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	file := write(t, "f", "")
	if code, _, stderr := tq.submit(t, "artifacts", id, "-o", file); code != exitUsage || !strings.Contains(stderr, "not a directory") {
		t.Fatalf("-o a file: exit %d, stderr %q", code, stderr)
	}
}
