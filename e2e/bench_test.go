package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
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
