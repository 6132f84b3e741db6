package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"libvirt.org/go/libvirt"

	"github.com/smallscale-ci/smallscale/internal/natsserver"
	"github.com/smallscale-ci/smallscale/queue"
	"github.com/smallscale-ci/smallscale/vmrun"
)

// TestChaos is the fault-injection suite ("nothing lost"): it submits N jobs to its own
// JetStream broker while SIGKILLing and restarting its own two workers at random points,
// restarting the broker once and libvirtd once; then every job must have exactly one terminal
// result, every job that ran to its end must show its complete output and exit code, the jobs
// stream must be empty and no domain or overlay of its jobs may remain.
//
// SMALLSCALE_CHAOS_JOBS sets N (default 6, the short form make test runs; make chaos runs more);
// SMALLSCALE_CHAOS_SEED replays a run's randomness (default: time-based). Both are printed, with
// one summary line of the figures (and a line of details); SMALLSCALE_CHAOS_REPORT, when set, is
// a file the two lines are appended to, since go test hides a passing package's output in
// package list mode. SMALLSCALE_CHAOS_LOGS, when set, is a directory that receives the workers'
// logs.
//
// It uses TestMain's binaries and libvirt connection, not its worker. Restarting libvirtd breaks
// every libvirt connection on the host: TestMain's is replaced by a fresh one, TestMain's worker
// reconnects on its own.
func TestChaos(t *testing.T) {
	n := 6
	if s := os.Getenv("SMALLSCALE_CHAOS_JOBS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("SMALLSCALE_CHAOS_JOBS=%q: want a positive number", s)
		}
		n = v
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("SMALLSCALE_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SMALLSCALE_CHAOS_SEED=%q: want an integer", s)
		}
		seed = v
	}
	t.Logf("chaos: seed=%d jobs=%d", seed, n)
	fmt.Printf("chaos: seed=%d jobs=%d (SMALLSCALE_CHAOS_SEED=%d replays the randomness)\n", seed, n, seed)

	c := newChaos(t, seed)
	c.startBroker()
	for i := 1; i <= 2; i++ {
		c.workers = append(c.workers, &chaosWorker{name: fmt.Sprintf("chaos-%d", i), dir: filepath.Join(c.dir, fmt.Sprintf("w%d", i))})
	}
	for _, w := range c.workers {
		c.startWorker(w)
	}
	c.connect()

	// The plan: N submissions and the faults in a random order, a submission first and last, so
	// that jobs are pending around every fault.
	kills := 2 + n/10
	var plan []string
	for range n - 1 {
		plan = append(plan, "submit")
	}
	for range kills {
		plan = append(plan, faultKill)
	}
	plan = append(plan, faultNATS, faultLibvirt)
	c.rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	plan = chaosPlanEndingWithSubmit(append([]string{"submit"}, plan...))
	t.Logf("chaos: plan %s", strings.Join(plan, " "))

	for _, step := range plan {
		switch step {
		case "submit":
			c.submit()
			c.pause(300*time.Millisecond, 2*time.Second)
		case faultKill:
			c.killWorker()
			c.pause(time.Second, 5*time.Second)
		case faultNATS:
			c.restartBroker()
			c.pause(time.Second, 5*time.Second)
		case faultLibvirt:
			c.restartLibvirtd()
			c.pause(time.Second, 5*time.Second)
		}
		c.restartUnexpectedExits()
	}

	// Every job ends and every job message is acked or terminated.
	deadline := c.start.Add(2*time.Minute + time.Duration(n)*30*time.Second)
	c.waitTerminal(deadline)
	drained := c.waitJobsDrained(deadline)
	c.stopWorkers()
	c.check(drained)
}

const (
	faultKill    = "worker-kill"
	faultNATS    = "nats-restart"
	faultLibvirt = "libvirtd-restart"
)

// chaosPlanEndingWithSubmit moves one submission to the end of the plan.
func chaosPlanEndingWithSubmit(plan []string) []string {
	if plan[len(plan)-1] == "submit" {
		return plan
	}
	for i := len(plan) - 1; i > 0; i-- { // plan[0] stays the first submission
		if plan[i] == "submit" {
			return append(slices.Delete(slices.Clone(plan), i, i+1), "submit")
		}
	}
	return plan
}

// chaos is one run: its broker, workers, jobs and what happened to them.
type chaos struct {
	t     *testing.T
	rng   *rand.Rand
	seed  int64
	start time.Time
	dir   string

	addr, storeDir string
	ns             *server.Server

	nc *nats.Conn
	js jetstream.JetStream
	q  *queue.Queue

	workers []*chaosWorker
	jobs    []*chaosJob
	faults  map[string]int

	submitRetries int
	mu            sync.Mutex
	unexpected    []string // workers that exited without being told to
}

type chaosWorker struct {
	name, dir string
	log       string
	starts    int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	killed bool // by the test: an exit is expected
}

type chaosJob struct {
	id    string
	lines int
	sleep string
	exit  int
}

func (j *chaosJob) script() string {
	return fmt.Sprintf("for i in $(seq 1 %d); do echo \"job %s line $i\"; sleep %s; done\nexit %d\n", j.lines, j.id, j.sleep, j.exit)
}

func (j *chaosJob) output() string {
	var b strings.Builder
	for i := 1; i <= j.lines; i++ {
		fmt.Fprintf(&b, "job %s line %d\n", j.id, i)
	}
	return b.String()
}

// lastLine is the script's last line: Follow has shown the whole output once it showed it.
func (j *chaosJob) lastLine() string { return fmt.Sprintf("job %s line %d\n", j.id, j.lines) }

func newChaos(t *testing.T, seed int64) *chaos {
	dir := t.TempDir()
	c := &chaos{
		t: t, seed: seed, start: time.Now(), dir: dir,
		rng:      rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x5eed)),
		storeDir: filepath.Join(dir, "nats"),
		faults:   map[string]int{faultKill: 0, faultNATS: 0, faultLibvirt: 0},
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	c.addr = fmt.Sprintf("127.0.0.1:%d", port)
	t.Cleanup(c.cleanup)
	return c
}

func (c *chaos) url() string { return "nats://" + c.addr }

// pause waits a random time in [lo, hi): the spacing of the experiment, not a wait for a state.
func (c *chaos) pause(lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(c.rng.Int64N(int64(hi-lo))))
}

func (c *chaos) startBroker() {
	s, err := natsserver.Start(c.addr, c.storeDir)
	if err != nil {
		c.t.Fatalf("start the chaos broker: %v", err)
	}
	c.ns = s
}

// restartBroker shuts the broker down and starts it again on the same address and store after
// a random pause; the streams, consumers and buckets survive in the store.
func (c *chaos) restartBroker() {
	c.faults[faultNATS]++
	c.t.Logf("chaos: %s: restarting the NATS server", c.since())
	c.ns.Shutdown()
	c.ns.WaitForShutdown()
	c.pause(200*time.Millisecond, 2*time.Second)
	poll(c.t, 30*time.Second, 200*time.Millisecond, "restart the chaos broker", func() error {
		s, err := natsserver.Start(c.addr, c.storeDir)
		if err == nil {
			c.ns = s
		}
		return err
	})
	// Go on once this test's own connection is back and JetStream answers.
	c.waitBrokerAnswers(30 * time.Second)
	c.t.Logf("chaos: %s: NATS server back", c.since())
}

func (c *chaos) waitBrokerAnswers(within time.Duration) {
	poll(c.t, within, 100*time.Millisecond, "the chaos broker answers", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.q.CheckRunner(ctx, "tiny"); err != nil {
			return err
		}
		if !c.nc.IsConnected() {
			return errors.New("this test's connection is not back")
		}
		return nil
	})
}

// connect opens this test's queue handle once a worker has set up the streams and the tiny
// runner's consumer.
func (c *chaos) connect() {
	nc, err := nats.Connect(c.url(), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		c.t.Fatalf("connect to the chaos broker: %v", err)
	}
	c.nc = nc
	c.js, err = jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	poll(c.t, 90*time.Second, 200*time.Millisecond, "a chaos worker sets up the queue", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		q, err := queue.Open(ctx, c.js, "")
		if err == nil {
			err = q.CheckRunner(ctx, "tiny")
		}
		if err == nil {
			c.q = q
			return nil
		}
		c.restartUnexpectedExits()
		return err
	})
}

func (c *chaos) since() string { return time.Since(c.start).Round(100 * time.Millisecond).String() }

// startWorker starts (or starts again) one worker process; its output goes to its log file.
func (c *chaos) startWorker(w *chaosWorker) {
	c.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.starts++
	if w.log == "" {
		w.log = filepath.Join(c.dir, w.name+".log")
	}
	f, err := os.OpenFile(w.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== chaos %s: start #%d of %s\n", c.since(), w.starts, w.name)
	cmd := exec.Command(filepath.Join(env.bin, "worker"))
	cmd.Env = append(os.Environ(),
		"SMALLSCALE_NATS_URL="+c.url(),
		"SMALLSCALE_WORKER_NAME="+w.name,
		"SMALLSCALE_CONCURRENCY=2",
		"SMALLSCALE_DOMAIN_TYPE=qemu",
		"SMALLSCALE_RUNNERS=tiny",
		"SMALLSCALE_RUNNERS_DIR=../runners",
		"SMALLSCALE_SOCKET_DIR="+filepath.Join(w.dir, "sock"),
		"SMALLSCALE_DATA_DIR="+filepath.Join(w.dir, "data"),
		"SMALLSCALE_ACK_WAIT=15s",
		"SMALLSCALE_MAX_ATTEMPTS=5",
		"SMALLSCALE_BOOT_TIMEOUT=60s",
		"SMALLSCALE_JOB_TIMEOUT=5m",
		"SMALLSCALE_LEFTOVER_AGE=5s",
		"SMALLSCALE_SHUTDOWN_GRACE=60s",
	)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("start worker %s: %v", w.name, err)
	}
	exited := make(chan struct{})
	w.cmd, w.exited, w.killed = cmd, exited, false
	go func() {
		err := cmd.Wait()
		f.Close()
		w.mu.Lock()
		if !w.killed {
			c.mu.Lock()
			c.unexpected = append(c.unexpected, fmt.Sprintf("%s (start #%d) exited on its own: %v", w.name, w.starts, err))
			c.mu.Unlock()
		}
		w.mu.Unlock()
		close(exited)
	}()
}

func (w *chaosWorker) alive() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.exited == nil {
		return false
	}
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the worker as an expected end and waits up to within for it to exit.
func (w *chaosWorker) signal(sig syscall.Signal, within time.Duration) bool {
	w.mu.Lock()
	if w.cmd == nil || w.exited == nil {
		w.mu.Unlock()
		return true
	}
	w.killed = true
	_ = w.cmd.Process.Signal(sig)
	exited := w.exited
	w.mu.Unlock()
	select {
	case <-exited:
		return true
	case <-time.After(within):
		return false
	}
}

// restartUnexpectedExits starts again every worker that exited without the test asking.
func (c *chaos) restartUnexpectedExits() {
	for _, w := range c.workers {
		w.mu.Lock()
		dead := w.exited != nil && !w.killed
		if dead {
			select {
			case <-w.exited:
			default:
				dead = false
			}
		}
		w.mu.Unlock()
		if dead {
			c.t.Logf("chaos: %s: %s exited on its own; starting it again", c.since(), w.name)
			c.startWorker(w)
		}
	}
}

// killWorker SIGKILLs a random live worker and starts it again after a random pause.
func (c *chaos) killWorker() {
	var live []*chaosWorker
	for _, w := range c.workers {
		if w.alive() {
			live = append(live, w)
		}
	}
	if len(live) == 0 {
		return
	}
	w := live[c.rng.IntN(len(live))]
	c.faults[faultKill]++
	c.t.Logf("chaos: %s: SIGKILL %s", c.since(), w.name)
	if !w.signal(syscall.SIGKILL, 30*time.Second) {
		c.t.Fatalf("%s did not die of SIGKILL within 30s", w.name)
	}
	c.pause(300*time.Millisecond, 5*time.Second)
	c.t.Logf("chaos: %s: starting %s again", c.since(), w.name)
	c.startWorker(w)
}

// restartLibvirtd stops libvirtd (by its pid) and starts it again, then waits until it answers.
// The test's shared libvirt connection (env.virt) is replaced, since the old one died with the
// daemon.
func (c *chaos) restartLibvirtd() {
	c.faults[faultLibvirt]++
	c.t.Logf("chaos: %s: restarting libvirtd", c.since())
	pids := libvirtdPIDs()
	if len(pids) == 0 {
		c.t.Fatal("libvirtd is not running")
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	poll(c.t, 60*time.Second, 100*time.Millisecond, "libvirtd stops after SIGTERM", func() error {
		if left := libvirtdPIDs(); len(left) > 0 {
			return fmt.Errorf("pids %v still run", left)
		}
		return nil
	})
	// The daemon's output goes to a file: a pipe might stay open in the daemon and block Run.
	out, err := os.Create(filepath.Join(c.dir, "libvirtd-start.out"))
	if err != nil {
		c.t.Fatal(err)
	}
	start := exec.Command("libvirtd", "-d")
	start.Stdout, start.Stderr = out, out
	err = start.Run()
	out.Close()
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		c.t.Fatalf("libvirtd -d: %v\n%s", err, b)
	}
	poll(c.t, 60*time.Second, 200*time.Millisecond, "libvirtd answers after its start", func() error {
		return exec.Command("virsh", "-c", "qemu:///system", "version").Run()
	})
	conn, err := libvirt.NewConnect("qemu:///system")
	if err != nil {
		c.t.Fatalf("reconnect to libvirtd: %v", err)
	}
	old := env.virt
	env.virt = conn
	_, _ = old.Close()
	c.t.Logf("chaos: %s: libvirtd back", c.since())
}

// libvirtdPIDs finds the libvirtd daemons by their exact process name.
func libvirtdPIDs() []int {
	out, _ := exec.Command("pgrep", "-x", "libvirtd").Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// submit queues one job with a random length, pace and exit code. A submission cut by a fault
// is tried again: the status entry and the job's message id make that safe.
func (c *chaos) submit() {
	job, err := queue.NewJob("tiny", "true")
	if err != nil {
		c.t.Fatal(err)
	}
	j := &chaosJob{
		id:    job.ID,
		lines: 3 + c.rng.IntN(10),
		sleep: fmt.Sprintf("0.%d", 1+c.rng.IntN(5)),
	}
	if c.rng.IntN(3) == 0 {
		j.exit = 1 + c.rng.IntN(9)
	}
	job.Script = j.script()
	job.TimeoutSeconds = 120
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.q.Submit(ctx, job)
		if errors.Is(err, queue.ErrDuplicateJob) {
			// An earlier try stored the status (and perhaps the message): publish the message
			// again under the job's id; the duplicate window drops it if it is there already.
			err = c.republish(ctx, job)
		}
		cancel()
		if err == nil {
			break
		}
		c.submitRetries++
		if time.Now().After(deadline) {
			c.t.Fatalf("submit job %s: %v", job.ID, err)
		}
		c.t.Logf("chaos: submit %s failed, trying again: %v", job.ID, err)
		time.Sleep(500 * time.Millisecond)
	}
	c.jobs = append(c.jobs, j)
	c.t.Logf("chaos: %s: submitted %s (%d lines, sleep %s, exit %d)", c.since(), j.id, j.lines, j.sleep, j.exit)
}

func (c *chaos) republish(ctx context.Context, job queue.Job) error {
	data, err := job.Encode()
	if err != nil {
		return err
	}
	msg := nats.NewMsg(c.q.Names().JobSubject(job.Runner))
	msg.Data = data
	_, err = c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(job.ID), jetstream.WithExpectStream(c.q.Names().JobsStream()))
	return err
}

// waitTerminal polls every job's status until all are terminal or the deadline passes.
func (c *chaos) waitTerminal(deadline time.Time) {
	pending := map[string]queue.Status{}
	for _, j := range c.jobs {
		pending[j.id] = queue.Status{}
	}
	for {
		for id := range pending {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := c.q.Status(ctx, id)
			cancel()
			if err != nil {
				continue
			}
			if st.State.Terminal() {
				delete(pending, id)
			} else {
				pending[id] = st
			}
		}
		if len(pending) == 0 {
			c.t.Logf("chaos: %s: every job has a terminal status", c.since())
			return
		}
		if time.Now().After(deadline) {
			for id, st := range pending {
				c.t.Errorf("job %s is not terminal at the deadline: %+v", id, st)
			}
			return
		}
		c.restartUnexpectedExits()
		time.Sleep(500 * time.Millisecond)
	}
}

// waitJobsDrained polls the jobs stream until it is empty (every job acked or terminated).
func (c *chaos) waitJobsDrained(deadline time.Time) bool {
	var last uint64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := c.js.Stream(ctx, c.q.Names().JobsStream())
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(ctx); err == nil {
				last = info.State.Msgs
			}
		}
		cancel()
		if err == nil && last == 0 {
			return true
		}
		if time.Now().After(deadline) {
			c.t.Errorf("the jobs stream still holds %d messages at the deadline (err %v)", last, err)
			return false
		}
		c.restartUnexpectedExits()
		time.Sleep(500 * time.Millisecond)
	}
}

// stopWorkers ends every worker with SIGTERM, as an operator would.
func (c *chaos) stopWorkers() {
	for _, w := range c.workers {
		if w.alive() && !w.signal(syscall.SIGTERM, 120*time.Second) {
			c.t.Errorf("%s did not stop within 120s of SIGTERM (its shutdown grace is 60s)", w.name)
			w.signal(syscall.SIGKILL, 10*time.Second)
		}
	}
}

// check asserts what the issue asks and prints the summary line.
func (c *chaos) check(drained bool) {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	names := c.q.Names()

	// Results per job, counted from the results stream itself.
	counts := map[string]uint64{}
	rs, err := c.js.Stream(ctx, names.ResultsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := rs.Info(ctx, jetstream.WithSubjectFilter(names.ResultSubject(">")))
	if err != nil {
		t.Fatal(err)
	}
	for subj, k := range info.State.Subjects {
		counts[strings.TrimPrefix(subj, names.ResultSubject(""))] = k
	}

	var (
		lost, duplicates, errorResults int
		earlierOutput, redelivered     int
		maxAttempt, followWrong        int
	)
	known := map[string]bool{}
	for _, j := range c.jobs {
		known[j.id] = true
		k := counts[j.id]
		if k > 1 {
			duplicates += int(k - 1)
			t.Errorf("job %s has %d results", j.id, k)
		}
		st, serr := c.q.Status(ctx, j.id)
		if k == 0 || serr != nil || !st.State.Terminal() {
			lost++
			t.Errorf("job %s lost: %d results, status %+v (err %v)", j.id, k, st, serr)
			continue
		}
		maxAttempt = max(maxAttempt, st.Attempt)
		if st.Attempt > 1 {
			redelivered++
		}
		res, err := c.q.Result(ctx, j.id)
		if err != nil {
			t.Errorf("job %s: result: %v", j.id, err)
			continue
		}
		if res.State != st.State {
			t.Errorf("job %s: result says %s, status says %s", j.id, res.State, st.State)
		}
		switch res.State {
		case queue.StateSucceeded, queue.StateFailed:
			if res.ExitCode == nil || *res.ExitCode != j.exit {
				t.Errorf("job %s: exit code %v, want %d (result %+v)", j.id, exitCodeOf(res), j.exit, res)
			}
			if res.Error != "" {
				t.Errorf("job %s ended %s with error %q", j.id, res.State, res.Error)
			}
			earlier, err := c.checkOutput(ctx, j, res)
			if err != nil {
				t.Errorf("job %s (attempt %d, worker %s): %v", j.id, res.Attempt, res.Worker, err)
			}
			if earlier {
				earlierOutput++
			}
			// What a user following the job (submit, submit logs -f) is shown: every attempt's
			// output, the last attempt's complete at the end.
			var followed bytes.Buffer
			fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
			_, ferr := c.q.Follow(fctx, j.id, &followed)
			fcancel()
			if ferr != nil || !bytes.Contains(followed.Bytes(), []byte(j.lastLine())) {
				followWrong++
				t.Errorf("chaos: job %s (attempt %d): Follow did not end with the job's whole output (err %v):\n%s", j.id, res.Attempt, ferr, followed.String())
			}
		case queue.StateError:
			// Acceptable only when smallscale gave up after its attempts: retries of
			// infrastructure failures ran out, or deliveries ran out (every worker lost).
			errorResults++
			t.Logf("chaos: job %s ended in error after %d attempts: %s", j.id, st.Attempt, res.Error)
			if !strings.Contains(res.Error, "gave up after") && !strings.Contains(res.Error, "no attempt finished the job") {
				t.Errorf("job %s ended in error without giving up after its attempts: %q", j.id, res.Error)
			}
		default:
			t.Errorf("job %s ended %s: %q", j.id, res.State, res.Error)
		}
	}
	for id := range counts {
		if !known[id] {
			t.Errorf("a result for a job this test did not submit: %s", id)
		}
	}
	if !drained {
		t.Errorf("the jobs stream is not empty")
	}

	// No domain or overlay of these jobs remains. A killed worker's overlay is removed when a
	// worker starts and finds it older than SMALLSCALE_LEFTOVER_AGE; one more start of a worker
	// takes care of what the last start left.
	before := c.leftovers()
	cleaned := len(before)
	if len(before) > 0 {
		t.Logf("chaos: leftovers after the workers stopped: %v; one more worker start-up to remove them", before)
		c.cleanupStart()
	}
	after := c.leftovers()
	for _, l := range after {
		t.Errorf("leftover: %s", l)
	}

	wall := time.Since(c.start).Round(time.Second)
	summary := fmt.Sprintf("chaos: seed=%d jobs=%d faults: worker-kill=%d nats-restart=%d libvirtd-restart=%d; lost=%d duplicate-results=%d leftovers=%d error-results=%d; wall=%s",
		c.seed, len(c.jobs), c.faults[faultKill], c.faults[faultNATS], c.faults[faultLibvirt],
		lost, duplicates, len(after), errorResults, wall)
	// Attempts that ran while a newer one of the same job had been delivered (their results are
	// dropped by the fence): the script then ran more than once.
	var superseded int
	for _, w := range c.workers {
		b, _ := os.ReadFile(w.log)
		superseded += bytes.Count(b, []byte(`msg="result dropped: the job is no longer this attempt's"`))
	}
	details := fmt.Sprintf("chaos: details: redelivered=%d max-attempt=%d output-with-earlier-attempts=%d follow-incomplete=%d superseded-attempts-ran=%d leftovers-before-cleanup-start=%d submit-retries=%d unexpected-worker-exits=%d",
		redelivered, maxAttempt, earlierOutput, followWrong, superseded, cleaned, c.submitRetries, len(c.unexpectedExits()))
	t.Log(summary)
	t.Log(details)
	fmt.Println(summary)
	fmt.Println(details)
	if path := os.Getenv("SMALLSCALE_CHAOS_REPORT"); path != "" {
		// go test shows a passing package's output only with -v or in local directory mode.
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			fmt.Fprintf(f, "%s\n%s\n", summary, details)
			f.Close()
		}
	}
	if c.faults[faultNATS] != 1 || c.faults[faultLibvirt] != 1 || c.faults[faultKill] == 0 {
		t.Errorf("faults injected: %v", c.faults)
	}
	for _, u := range c.unexpectedExits() {
		t.Errorf("worker %s", u)
	}
}

func (c *chaos) unexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.unexpected)
}

func exitCodeOf(r queue.Result) any {
	if r.ExitCode == nil {
		return nil
	}
	return *r.ExitCode
}

// checkOutput compares the job's output with what its script prints. The logs subject keeps the
// chunks of every attempt; the last attempt's are its last res.LogChunks chunks. It reports
// whether earlier attempts left output before the last attempt's.
func (c *chaos) checkOutput(ctx context.Context, j *chaosJob, res queue.Result) (earlier bool, err error) {
	chunks, attempts, err := c.logChunks(ctx, j.id)
	if err != nil {
		return false, err
	}
	want := j.output()
	var own, all []byte
	for i, chunk := range chunks {
		all = append(all, chunk...)
		if attempts[i] == strconv.Itoa(res.Attempt) {
			own = append(own, chunk...)
		} else {
			earlier = true
		}
	}
	if string(own) != want || res.LogBytes != int64(len(want)) {
		return earlier, fmt.Errorf("output of attempt %d (%d chunks, %d bytes announced) is not the script's:\n--- got\n%s--- want\n%s--- all chunks\n%s", res.Attempt, res.LogChunks, res.LogBytes, own, want, all)
	}
	if earlier {
		c.t.Logf("chaos: job %s: attempt %d's output is complete; earlier attempts left %d bytes beside it", j.id, res.Attempt, len(all)-len(own))
	}
	return earlier, nil
}

// logChunks reads every output chunk of a job from the logs stream, in order, with the attempt
// that wrote each.
func (c *chaos) logChunks(ctx context.Context, id string) (chunks [][]byte, attempts []string, err error) {
	names := c.q.Names()
	s, err := c.js.Stream(ctx, names.LogsStream())
	if err != nil {
		return nil, nil, err
	}
	last, err := s.GetLastMsgForSubject(ctx, names.LogSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	cons, err := c.js.OrderedConsumer(ctx, names.LogsStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{names.LogSubject(id)}})
	if err != nil {
		return nil, nil, err
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return chunks, attempts, fmt.Errorf("read output: %w", err)
		}
		chunks = append(chunks, m.Data())
		attempts = append(attempts, m.Headers().Get(queue.AttemptHeader))
		md, err := m.Metadata()
		if err != nil {
			return chunks, attempts, err
		}
		if md.Sequence.Stream >= last.Sequence {
			return chunks, attempts, nil
		}
	}
}

// leftovers lists what remains of this run's jobs on the host: domains named after them or
// marked by its workers, overlays named after them in the pool and files in the pool directory.
func (c *chaos) leftovers() []string {
	var out []string
	ids := make([]string, 0, len(c.jobs))
	for _, j := range c.jobs {
		ids = append(ids, j.id)
	}
	ours := func(name string) bool {
		return slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(name, id) })
	}
	doms, err := env.virt.ListAllDomains(0)
	if err != nil {
		c.t.Fatalf("list domains: %v", err)
	}
	for _, d := range doms {
		name, _ := d.GetName()
		if strings.HasPrefix(name, vmrun.NamePrefix) {
			marked := false
			if doc, err := d.GetXMLDesc(0); err == nil {
				if mark, ok, _ := vmrun.ParseJobMark(doc); ok && strings.HasPrefix(mark.Worker, "chaos-") {
					marked = true
				}
			}
			if marked || ours(name) {
				out = append(out, "domain "+name)
			}
		}
		d.Free()
	}
	pool, err := env.virt.LookupStoragePoolByName(env.pool)
	if err != nil {
		c.t.Fatalf("pool %s: %v", env.pool, err)
	}
	defer pool.Free()
	vols, err := pool.ListAllStorageVolumes(0)
	if err != nil {
		c.t.Fatalf("list volumes: %v", err)
	}
	for _, v := range vols {
		if name, err := v.GetName(); err == nil && ours(name) {
			out = append(out, "volume "+name)
		}
		v.Free()
	}
	files, _ := os.ReadDir(poolDir)
	for _, f := range files {
		if ours(f.Name()) {
			out = append(out, "file "+filepath.Join(poolDir, f.Name()))
		}
	}
	slices.Sort(out)
	return out
}

// cleanupStart starts a worker once more and stops it when it is ready: its start-up removes its
// own leftover domains and every overlay older than SMALLSCALE_LEFTOVER_AGE that no domain uses.
func (c *chaos) cleanupStart() {
	// The overlays must be older than the leftover age (5s) to be judged; wait until they are.
	var youngest time.Time
	files, _ := os.ReadDir(poolDir)
	for _, f := range files {
		if info, err := f.Info(); err == nil && info.ModTime().After(youngest) {
			youngest = info.ModTime()
		}
	}
	if wait := time.Until(youngest.Add(6 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	for _, w := range c.workers {
		offset := fileSize(w.log)
		c.startWorker(w)
		deadline := time.Now().Add(90 * time.Second)
		for !logHas(w.log, offset, "worker ready") {
			if !w.alive() || time.Now().After(deadline) {
				c.t.Errorf("cleanup start of %s did not get ready", w.name)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !w.signal(syscall.SIGTERM, 90*time.Second) {
			c.t.Errorf("%s did not stop within 90s of SIGTERM", w.name)
			w.signal(syscall.SIGKILL, 10*time.Second)
		}
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func logHas(path string, offset int64, s string) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return false
	}
	return bytes.Contains(b[offset:], []byte(s))
}

// cleanup kills what is left of the run and shows the workers' logs when the test failed.
func (c *chaos) cleanup() {
	for _, w := range c.workers {
		w.signal(syscall.SIGKILL, 10*time.Second)
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.ns != nil {
		c.ns.Shutdown()
		c.ns.WaitForShutdown()
	}
	keep := os.Getenv("SMALLSCALE_CHAOS_LOGS")
	for _, w := range c.workers {
		b, err := os.ReadFile(w.log)
		if err != nil {
			continue
		}
		if keep != "" {
			if err := os.MkdirAll(keep, 0o755); err == nil {
				_ = os.WriteFile(filepath.Join(keep, fmt.Sprintf("%d-%s.log", c.seed, w.name)), b, 0o644)
			}
		}
		if c.t.Failed() {
			fmt.Fprintf(os.Stderr, "--- chaos worker %s log ---\n%s\n", w.name, b)
		}
	}
}
