package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkJob submits a trivial job b.N times, one after the other, and reports medians:
// submit start → first output line on submit's stdout, the whole job, the worker's phases, and
// the host's own overhead (the whole job minus guest boot and script run).
//
//	SMALLSCALE_E2E=1 go test ./e2e -run '^$' -bench Job -benchtime 7x
func BenchmarkJob(b *testing.B) {
	script := filepath.Join(b.TempDir(), "first.sh")
	writeFile(b, script, "echo first line\n")
	var first, total, prepare, boot, run, teardown, overhead []time.Duration
	for b.Loop() {
		start := time.Now()
		cmd := exec.CommandContext(context.Background(), filepath.Join(env.bin, "submit"), "--nats", env.natsURL, "--runner", "tiny", "--script", script)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		ids := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			sent := false
			for sc.Scan() {
				if id := jobIDIn(sc.Text()); id != "" && !sent {
					ids <- id
					sent = true
				}
			}
			if !sent {
				ids <- ""
			}
		}()
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			b.Fatal("no output")
		}
		first = append(first, time.Since(start))
		for sc.Scan() {
		}
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		total = append(total, time.Since(start))
		res := resultB(b, <-ids)
		t := res.Timings
		prepare = append(prepare, ms(t.PrepareMS))
		boot = append(boot, ms(t.BootMS))
		run = append(run, ms(t.RunMS))
		teardown = append(teardown, ms(t.TeardownMS))
		overhead = append(overhead, total[len(total)-1]-ms(t.BootMS)-ms(t.RunMS))
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{
		{"first-output-ms", first}, {"job-ms", total}, {"prepare-ms", prepare}, {"boot-ms", boot},
		{"run-ms", run}, {"teardown-ms", teardown}, {"overhead-ms", overhead},
	} {
		b.ReportMetric(float64(median(m.d).Milliseconds()), "median-"+m.name)
	}
	b.ReportMetric(0, "ns/op")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// BenchmarkArtifact200MB moves a 200 MB artifact from the guest to the submitter's disk and
// reports the throughput of that path (guest → worker → object store → submitter's disk) and
// the worker's peak resident memory (VmHWM) before and after.
//
//	SMALLSCALE_E2E=1 go test ./e2e -run '^$' -bench Artifact200MB -benchtime 3x
func BenchmarkArtifact200MB(b *testing.B) {
	const size = 200 << 20
	script := filepath.Join(b.TempDir(), "big.sh")
	// Zeros: the guest makes them fast, and nothing on the path compresses.
	writeFile(b, script, "head -c 209715200 /dev/zero > \"$CI_OUTPUT/big.bin\"\n")
	hwmBefore := workerHWM(b)
	var mbps []float64
	for b.Loop() {
		out := filepath.Join(b.TempDir(), "out")
		cmd := exec.Command(filepath.Join(env.bin, "submit"), "--nats", env.natsURL, "--runner", "tiny",
			"--script", script, "--artifacts", out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		// The path's time is the worker's collect phase (guest → object store, from the result)
		// plus a download of the stored artifact (object store → disk).
		if err := cmd.Run(); err != nil {
			b.Fatalf("submit: %v\n%s", err, stderr.String())
		}
		res := resultB(b, jobIDIn(stderr.String()))
		st, err := os.Stat(filepath.Join(out, "big.bin"))
		if err != nil || st.Size() != size {
			b.Fatalf("artifact: %v, %v", st, err)
		}
		download := downloadTime(b, res.JobID)
		total := ms(res.Timings.CollectMS) + download
		mbps = append(mbps, float64(size)/1e6/total.Seconds())
	}
	slices.Sort(mbps)
	b.ReportMetric(mbps[len(mbps)/2], "median-MB/s")
	b.ReportMetric(float64(hwmBefore)/1024, "worker-peak-MiB-before")
	b.ReportMetric(float64(workerHWM(b))/1024, "worker-peak-MiB-after")
	b.ReportMetric(0, "ns/op")
}

// downloadTime times `submit artifacts` of a finished job into a fresh directory.
func downloadTime(b *testing.B, jobID string) time.Duration {
	out := filepath.Join(b.TempDir(), "again")
	start := time.Now()
	cmd := exec.Command(filepath.Join(env.bin, "submit"), "artifacts", jobID, "-o", out, "--nats", env.natsURL)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("submit artifacts: %v\n%s", err, msg)
	}
	return time.Since(start)
}

// workerHWM reads the worker's peak resident set size in KiB.
func workerHWM(b *testing.B) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", env.workerPID))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
