package e2e

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallscale-ci/smallscale/queue"
)

// An input tree arrives in the guest's working directory intact: nested files, contents, the
// executable bit, a link inside the tree.
func TestInputTreeArrivesIntact(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, mkdirs(t, filepath.Join(src, "a", "b"), "deep.txt"), "deep content\n")
	writeFile(t, filepath.Join(src, "top.txt"), "top\n")
	tool := filepath.Join(src, "a", "tool.sh")
	writeFile(t, tool, "#!/bin/sh\necho tool ran with $1\n")
	if err := os.Chmod(tool, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/b/deep.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.json")
	writeFile(t, config, `{"answer": 42}`)

	script := scriptFile(t, `set -e
cat src/a/b/deep.txt src/top.txt config.json; echo
test -x src/a/tool.sh && ./src/a/tool.sh arg1
test ! -x src/top.txt && echo top not executable
cat src/link
find src | sort
`)
	r := submit(t, "--runner", "tiny", "--script", script, "--input", src, "--input", config)
	if r.code != 0 {
		t.Fatalf("submit exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	want := "deep content\ntop\n{\"answer\": 42}\ntool ran with arg1\ntop not executable\ndeep content\n" +
		"src\nsrc/a\nsrc/a/b\nsrc/a/b/deep.txt\nsrc/a/tool.sh\nsrc/link\nsrc/top.txt\n"
	if r.stdout != want {
		t.Fatalf("guest saw:\n%s\nwant:\n%s", r.stdout, want)
	}
	assertNoLeftovers(t, r.jobID)
}

// A 50 MB random artifact comes back byte-identical, and the result lists it with its hash.
func TestLargeArtifactComesBackIdentical(t *testing.T) {
	// The guest makes the file from a seed the host knows too: 50 MB of random bytes travel
	// only from guest to host.
	seed := make([]byte, 1<<20)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "seed.bin")
	if err := os.WriteFile(seedFile, seed, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for range 50 {
		h.Write(seed)
	}
	want := hex.EncodeToString(h.Sum(nil))

	out := filepath.Join(dir, "out")
	script := scriptFile(t, `set -e
mkdir -p "$CI_OUTPUT/sub"
for i in $(seq 50); do cat seed.bin; done > "$CI_OUTPUT/sub/big.bin"
echo small > "$CI_OUTPUT/small.txt"
ls -l "$CI_OUTPUT/sub"
`)
	r := submit(t, "--runner", "tiny", "--script", script, "--input", seedFile, "--artifacts", out)
	if r.code != 0 {
		t.Fatalf("submit exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got := fileSHA256Hex(t, filepath.Join(out, "sub", "big.bin")); got != want {
		t.Fatalf("artifact SHA-256 %s, want %s", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(out, "small.txt")); err != nil || string(b) != "small\n" {
		t.Fatalf("small.txt = %q, %v", b, err)
	}
	res := result(t, r.jobID)
	found := false
	for _, a := range res.Artifacts {
		if a.Path == "sub/big.bin" {
			found = a.SHA256 == want && a.Size == 50<<20
		}
	}
	if !found {
		t.Fatalf("result artifacts %+v lack sub/big.bin with SHA-256 %s", res.Artifacts, want)
	}
	assertNoLeftovers(t, r.jobID)
}

// Hostile artifacts are refused and named; nothing lands outside the target directory. The
// job plays a malicious guest: it writes a crafted archive with "../x", "/etc/x" and a link to
// "/" into the data channel, where the worker reads it first when it collects artifacts.
func TestHostileArtifactsAreRefused(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	tag := strings.ToLower(rand.Text()[:12])
	up, abs := "../x-"+tag, "/etc/smallscale-e2e-"+tag
	evil := filepath.Join(dir, "evil.tar")
	writeTar(t, evil, []tarEntry{
		{name: "./ok.txt", body: "fine\n"},
		{name: up, body: "escaped\n"},
		{name: abs, body: "escaped\n"},
		{name: "./root-link", link: "/"},
		{name: "./inner-link", link: "ok.txt"},
	})
	script := scriptFile(t, `set -e
cat evil.tar > "$CI_DATA"
echo planted
`)
	r := submit(t, "--runner", "tiny", "--script", script, "--input", evil, "--artifacts", out)
	if !strings.Contains(r.stdout, "planted") {
		t.Fatalf("submit exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	res := result(t, r.jobID)
	refused := map[string]bool{}
	for _, f := range res.Refused {
		refused[f.Path] = true
	}
	for _, name := range []string{up, abs, "root-link"} {
		if !refused[name] {
			t.Errorf("result does not refuse %q: %+v", name, res.Refused)
		}
		if !strings.Contains(r.stderr, name) {
			t.Errorf("submit's stderr does not name the refused %q:\n%s", name, r.stderr)
		}
	}
	for _, p := range []string{filepath.Join(dir, "x-"+tag), abs, filepath.Join(out, "root-link"), filepath.Join(out, "etc")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, "ok.txt")); err != nil || string(b) != "fine\n" {
		t.Errorf("ok.txt = %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(out, "inner-link")); err != nil || target != "ok.txt" {
		t.Errorf("inner-link -> %q, %v", target, err)
	}
	assertNoLeftovers(t, r.jobID)
}

type tarEntry struct{ name, body, link string }

func writeTar(t *testing.T, path string, entries []tarEntry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.link != "" {
			hdr = &tar.Header{Name: e.name, Mode: 0o777, Linkname: e.link, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// Cancelling a running job destroys its VM at once and ends it as cancelled.
func TestCancelRunningJob(t *testing.T) {
	script := scriptFile(t, "echo started\nsleep 600\necho never\n")
	job := submit(t, "--runner", "tiny", "--script", script, "--detach")
	if job.code != 0 {
		t.Fatalf("submit --detach exited %d: %s", job.code, job.stderr)
	}
	id := strings.TrimSpace(job.stdout)
	waitState(t, id, 90*time.Second, func(st queue.Status) bool { return hasPhase(st, queue.PhaseRunning) })
	waitOutput(t, id, "started", 60*time.Second)
	start := time.Now()
	c := submit(t, "cancel", id)
	if c.code != 0 {
		t.Fatalf("cancel exited %d: %s", c.code, c.stderr)
	}
	st := waitState(t, id, 30*time.Second, func(st queue.Status) bool { return st.State.Terminal() })
	took := time.Since(start)
	if st.State != queue.StateCancelled {
		t.Fatalf("state after cancel = %s (%s)", st.State, st.Error)
	}
	t.Logf("cancel to terminal state: %s", took)
	if res := result(t, id); res.State != queue.StateCancelled {
		t.Fatalf("result = %+v", res)
	}
	assertNoLeftovers(t, id)
}

// Cancelling a queued job means it never starts.
func TestCancelQueuedJobNeverStarts(t *testing.T) {
	// Fill both slots so the third job waits in the queue.
	blocker := scriptFile(t, "sleep 600\n")
	var blockers []string
	for range 2 {
		b := submit(t, "--runner", "tiny", "--script", blocker, "--detach")
		if b.code != 0 {
			t.Fatalf("submit exited %d: %s", b.code, b.stderr)
		}
		blockers = append(blockers, strings.TrimSpace(b.stdout))
	}
	t.Cleanup(func() {
		for _, id := range blockers {
			submit(t, "cancel", id)
			waitState(t, id, 60*time.Second, func(st queue.Status) bool { return st.State.Terminal() })
		}
	})
	for _, id := range blockers {
		waitState(t, id, 60*time.Second, func(st queue.Status) bool { return st.State == queue.StateRunning })
	}
	q := submit(t, "--runner", "tiny", "--script", scriptFile(t, "echo should never run\n"), "--detach")
	id := strings.TrimSpace(q.stdout)
	if st := waitState(t, id, 10*time.Second, func(queue.Status) bool { return true }); st.State != queue.StateQueued {
		t.Fatalf("third job is %s, want queued", st.State)
	}
	if c := submit(t, "cancel", id); c.code != 0 {
		t.Fatalf("cancel exited %d: %s", c.code, c.stderr)
	}
	// Free the slots; the worker then pulls the cancelled job and must drop it.
	for _, b := range blockers {
		submit(t, "cancel", b)
	}
	for _, b := range blockers {
		waitState(t, b, 60*time.Second, func(st queue.Status) bool { return st.State.Terminal() })
	}
	waitJobsDrained(t, 30*time.Second)
	st := waitState(t, id, 5*time.Second, func(st queue.Status) bool { return st.State.Terminal() })
	if st.State != queue.StateCancelled || hasPhase(st, queue.PhaseStarted) || st.Worker != "" {
		t.Fatalf("cancelled queued job: %+v", st)
	}
	if res := result(t, id); res.State != queue.StateCancelled || res.Worker != "" {
		t.Fatalf("result = %+v", res)
	}
	assertNoLeftovers(t, id)
}

// The output shown after the fact is byte-identical to what was streamed live.
func TestLogsAfterTheFactEqualLive(t *testing.T) {
	script := scriptFile(t, "for i in $(seq 200); do echo \"line $i\"; done\nprintf 'no newline at the end'\nprintf '\\001\\002\\377' >&2\n")
	r := submit(t, "--runner", "tiny", "--script", script)
	if r.code != 0 {
		t.Fatalf("submit exited %d: %s", r.code, r.stderr)
	}
	l := submit(t, "logs", r.jobID)
	if l.code != 0 {
		t.Fatalf("logs exited %d: %s", l.code, l.stderr)
	}
	if l.stdout != r.stdout {
		t.Fatalf("logs after the fact (%d bytes) differ from the live output (%d bytes)", len(l.stdout), len(r.stdout))
	}
	if !strings.HasSuffix(r.stdout, "no newline at the end\x01\x02\xff") {
		t.Fatalf("live output ends with %q", r.stdout[max(0, len(r.stdout)-40):])
	}
}

func mkdirs(t *testing.T, dir, file string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, file)
}

func hasPhase(st queue.Status, name string) bool {
	for _, p := range st.Phases {
		if p.Name == name {
			return true
		}
	}
	return false
}

// waitState polls the job's status until ok or the deadline.
func waitState(t *testing.T, id string, within time.Duration, ok func(queue.Status) bool) queue.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last queue.Status
	for {
		st, err := env.q.Status(context.Background(), id)
		if err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met within %s; last status %+v (err %v)", id, within, last, err)
		}
		<-tick.C
	}
}

// waitOutput polls the job's output until it contains want.
func waitOutput(t *testing.T, id, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var b strings.Builder
		if err := env.q.Logs(context.Background(), id, &b); err == nil && strings.Contains(b.String(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: output lacks %q after %s", id, want, within)
		}
		<-tick.C
	}
}

// waitJobsDrained polls until the jobs stream holds no message: every job was taken and acked.
func waitJobsDrained(t *testing.T, within time.Duration) {
	t.Helper()
	poll(t, within, 100*time.Millisecond, "the jobs stream empties", func() error {
		s, err := env.js.Stream(context.Background(), env.q.Names().JobsStream())
		if err != nil {
			return err
		}
		info, err := s.Info(context.Background())
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d messages", info.State.Msgs)
		}
		return nil
	})
}
