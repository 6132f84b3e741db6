package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallscale-ci/smallscale/queue"
)

func result(t *testing.T, jobID string) queue.Result { return resultB(t, jobID) }

func resultB(t testing.TB, jobID string) queue.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := env.q.Result(ctx, jobID)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestHelloJob(t *testing.T) {
	r := submit(t, "--runner", "tiny", "--script", "../examples/hello.sh", "--env", "GREETING=bonjour")
	if r.code != 0 {
		t.Fatalf("submit exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"bonjour from job " + r.jobID + " on runner tiny", "step 3", "done"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	res := result(t, r.jobID)
	if res.State != queue.StateSucceeded || res.ExitCode == nil || *res.ExitCode != 0 || res.Worker != "e2e" {
		t.Errorf("result = %+v", res)
	}
	assertNoLeftovers(t, r.jobID)
}

func TestFailingScriptExitCodeIsMirrored(t *testing.T) {
	r := submit(t, "--runner", "tiny", "--script", scriptFile(t, "echo about to fail\necho on stderr >&2\nexit 3\n"))
	if r.code != 3 {
		t.Fatalf("submit exited %d, want 3\nstderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "about to fail\non stderr\n" {
		t.Errorf("output = %q", r.stdout)
	}
	if res := result(t, r.jobID); res.State != queue.StateFailed || res.ExitCode == nil || *res.ExitCode != 3 {
		t.Errorf("result = %+v", res)
	}
	assertNoLeftovers(t, r.jobID)
}

func TestJobOverTimeoutIsTimedOut(t *testing.T) {
	r := submit(t, "--runner", "tiny", "--timeout", "3s", "--script", scriptFile(t, "echo started\nsleep 600\necho never\n"))
	if r.code != 124 {
		t.Fatalf("submit exited %d, want 124\nstderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "started") || strings.Contains(r.stdout, "never") {
		t.Errorf("output = %q", r.stdout)
	}
	if res := result(t, r.jobID); res.State != queue.StateTimedOut || res.ExitCode != nil {
		t.Errorf("result = %+v", res)
	}
	assertNoLeftovers(t, r.jobID)
}

func TestJobWritingItsDiskLeavesBaseImageIntact(t *testing.T) {
	base := "/var/lib/smallscale/images/tiny/base.qcow2"
	before := fileSHA256(t, base)
	r := submit(t, "--runner", "tiny", "--script", scriptFile(t,
		"dd if=/dev/urandom of=/dev/vda bs=1M count=16 conv=fsync 2>&1 | tail -n 1\n"+
			"head -c 16 /dev/vda | od -An -tx1 | grep -qv '00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00' && echo written\n"))
	if r.code != 0 || !strings.Contains(r.stdout, "written") {
		t.Fatalf("submit exited %d, output %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if after := fileSHA256(t, base); after != before {
		t.Fatalf("base image changed: %x -> %x", before, after)
	}
	assertNoLeftovers(t, r.jobID)
}

func TestTwoJobsOverlapOnDistinctVMs(t *testing.T) {
	script := scriptFile(t, "echo running on $CI_JOB_ID\nsleep 6\necho finished\n")
	var (
		wg   sync.WaitGroup
		runs [2]submitRun
	)
	done := make(chan struct{})
	for i := range runs {
		wg.Go(func() { runs[i] = submit(t, "--runner", "tiny", "--script", script) })
	}
	go func() { wg.Wait(); close(done) }()

	// While both run, the host holds two smallscale domains and two overlays at once.
	var maxDomains, maxVolumes int
	seenDomains := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
poll:
	for {
		select {
		case <-done:
			break poll
		case <-tick.C:
			d, v := smallscaleDomains(t), smallscaleVolumes(t)
			maxDomains, maxVolumes = max(maxDomains, len(d)), max(maxVolumes, len(v))
			for _, n := range d {
				seenDomains[n] = true
			}
		}
	}
	for i, r := range runs {
		if r.code != 0 || !strings.Contains(r.stdout, "finished") {
			t.Fatalf("job %d: submit exited %d, output %q\nstderr:\n%s", i, r.code, r.stdout, r.stderr)
		}
	}
	if maxDomains < 2 || maxVolumes < 2 {
		t.Errorf("at most %d domains and %d volumes existed at once, want 2 each", maxDomains, maxVolumes)
	}
	if len(seenDomains) != 2 {
		t.Errorf("domains seen: %v, want two distinct", seenDomains)
	}
	a, b := result(t, runs[0].jobID), result(t, runs[1].jobID)
	if !a.StartedAt.Before(b.FinishedAt) || !b.StartedAt.Before(a.FinishedAt) {
		t.Errorf("jobs did not overlap: %s..%s and %s..%s", a.StartedAt, a.FinishedAt, b.StartedAt, b.FinishedAt)
	}
	for _, r := range runs {
		assertNoLeftovers(t, r.jobID)
	}
}

func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func fileSHA256Hex(t *testing.T, path string) string {
	t.Helper()
	h := fileSHA256(t, path)
	return hex.EncodeToString(h[:])
}
