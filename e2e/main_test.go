// Package e2e runs smallscale end to end: the real worker and submit binaries, an embedded
// JetStream server, real libvirtd and QEMU booting the tiny runner.
//
// The tests run when SMALLSCALE_E2E=1 (make test sets it); then a missing libvirtd or tiny runner
// is a failure, not a skip.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"libvirt.org/go/libvirt"

	"github.com/smallscale-ci/smallscale/queue"
)

// env is what every test shares: one worker with two slots serving the tiny runner.
var env struct {
	bin       string // built binaries
	natsURL   string
	workerLog string
	workerPID int
	q         *queue.Queue
	js        jetstream.JetStream
	virt      *libvirt.Connect
	pool      string
}

func TestMain(m *testing.M) {
	if os.Getenv("SMALLSCALE_E2E") != "1" {
		fmt.Println("e2e: skipped; SMALLSCALE_E2E=1 runs them (make test does)")
		os.Exit(0)
	}
	code, err := runMain(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if env.workerLog != "" {
			if log, rerr := os.ReadFile(env.workerLog); rerr == nil {
				fmt.Fprintf(os.Stderr, "--- worker log ---\n%s\n", log)
			}
		}
		os.Exit(1)
	}
	os.Exit(code)
}

func runMain(m *testing.M) (int, error) {
	tmp, err := os.MkdirTemp("", "smallscale-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)

	if _, err := os.Stat("../runners/tiny/vm.xml"); err != nil {
		return 0, fmt.Errorf("the tiny runner is not built (run runners/tiny/build.sh or make runner): %w", err)
	}
	virt, err := libvirt.NewConnect("qemu:///system")
	if err != nil {
		return 0, fmt.Errorf("libvirtd is not reachable (deploy/setup-host.sh starts it): %w", err)
	}
	defer virt.Close()
	env.virt = virt
	env.pool = "smallscale"

	env.bin = filepath.Join(tmp, "bin")
	build := exec.Command("go", "build", "-o", env.bin+"/", "../cmd/worker", "../cmd/submit")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build binaries: %v\n%s", err, out)
	}

	port, err := freePort()
	if err != nil {
		return 0, err
	}
	env.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	workerNATS := "" // the worker starts its embedded server on port
	if url := os.Getenv("SMALLSCALE_E2E_NATS_URL"); url != "" {
		// A separate server, e.g. to measure the worker's memory without a broker inside it.
		env.natsURL, workerNATS = url, url
	}
	env.workerLog = filepath.Join(tmp, "worker.log")
	logFile, err := os.Create(env.workerLog)
	if err != nil {
		return 0, err
	}
	defer logFile.Close()
	w := exec.Command(filepath.Join(env.bin, "worker"))
	w.Env = append(os.Environ(),
		"SMALLSCALE_NATS_URL="+workerNATS,
		fmt.Sprintf("SMALLSCALE_NATS_LISTEN=127.0.0.1:%d", port),
		"SMALLSCALE_DATA_DIR="+filepath.Join(tmp, "data"),
		"SMALLSCALE_SOCKET_DIR="+filepath.Join(tmp, "sock"),
		"SMALLSCALE_RUNNERS_DIR=../runners",
		"SMALLSCALE_RUNNERS=tiny",
		"SMALLSCALE_CONCURRENCY=2",
		"SMALLSCALE_DOMAIN_TYPE=qemu",
		"SMALLSCALE_WORKER_NAME=e2e",
		"SMALLSCALE_BOOT_TIMEOUT=90s",
	)
	w.Stdout, w.Stderr = logFile, logFile
	// The worker dies with the tests, whatever ends them; libvirt then destroys its domains.
	w.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.Start(); err != nil {
		return 0, err
	}
	env.workerPID = w.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- w.Wait() }()
	defer func() {
		_ = w.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = w.Process.Kill()
		}
	}()

	// Wait until the worker has set up the queue and registered the runner.
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if q, err := openQueue(); err == nil {
			if _, err := q.js.Consumer(context.Background(), q.q.Names().JobsStream(), q.q.Names().RunnerConsumer("tiny")); err == nil {
				env.q, env.js = q.q, q.js
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("worker not ready after 60s")
		}
		select {
		case err := <-exited:
			return 0, fmt.Errorf("worker exited at start-up: %v", err)
		case <-tick.C:
		}
	}
	code := m.Run()
	if code != 0 {
		log, _ := os.ReadFile(env.workerLog)
		fmt.Fprintf(os.Stderr, "--- worker log ---\n%s\n", log)
	}
	return code, nil
}

type queueConn struct {
	q  *queue.Queue
	js jetstream.JetStream
}

func openQueue() (*queueConn, error) {
	nc, err := nats.Connect(env.natsURL, nats.Timeout(time.Second))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	q, err := queue.Open(context.Background(), js, "")
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &queueConn{q: q, js: js}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// submitRun is one run of the submit binary.
type submitRun struct {
	stdout, stderr string
	code           int
	jobID          string
}

// submit runs `submit` with args against the test worker and waits for it.
func submit(t *testing.T, args ...string) submitRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "submit"), args...)
	cmd.Env = append(os.Environ(), "SMALLSCALE_NATS_URL="+env.natsURL)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := submitRun{stdout: out.String(), stderr: errb.String()}
	if cmd.ProcessState == nil {
		t.Fatalf("submit did not run: %v", err)
	}
	r.code = cmd.ProcessState.ExitCode()
	r.jobID = jobIDIn(r.stderr)
	return r
}

// jobIDIn finds the job id in submit's stderr.
func jobIDIn(stderr string) string {
	_, rest, ok := strings.Cut(stderr, "submit: job ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, " ")
	return id
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// scriptFile writes a script into the test's temp dir.
func scriptFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.sh")
	writeFile(t, p, body)
	return p
}

// assertNoLeftovers fails when the job's domain or overlay still exists.
func assertNoLeftovers(t *testing.T, jobID string) {
	t.Helper()
	if jobID == "" {
		t.Fatal("no job id to check for leftovers")
	}
	for _, d := range smallscaleDomains(t) {
		if strings.Contains(d, jobID) {
			t.Errorf("domain %s of job %s still exists", d, jobID)
		}
	}
	for _, v := range smallscaleVolumes(t) {
		if strings.Contains(v, jobID) {
			t.Errorf("volume %s of job %s still exists", v, jobID)
		}
	}
	files, _ := filepath.Glob(filepath.Join(poolDir, "*"+jobID+"*"))
	if len(files) > 0 {
		t.Errorf("overlay files of job %s remain: %v", jobID, files)
	}
}

// poolDir is the worker's default SMALLSCALE_POOL_DIR.
const poolDir = "/var/lib/smallscale/pool"

func smallscaleDomains(t *testing.T) []string {
	t.Helper()
	doms, err := env.virt.ListAllDomains(0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range doms {
		if n, err := d.GetName(); err == nil && strings.HasPrefix(n, "smallscale-") {
			names = append(names, n)
		}
		d.Free()
	}
	return names
}

func smallscaleVolumes(t *testing.T) []string {
	t.Helper()
	pool, err := env.virt.LookupStoragePoolByName(env.pool)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Free()
	// No refresh: it would race with the worker's volume builds (PITFALLS 12), and the worker
	// creates and deletes through libvirt, which keeps the listing current. assertNoLeftovers
	// also looks at the pool directory itself.
	vols, err := pool.ListAllStorageVolumes(0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vols {
		if n, err := v.GetName(); err == nil && strings.HasPrefix(n, "smallscale-") {
			names = append(names, n)
		}
		v.Free()
	}
	return names
}

// poll calls try every interval until it returns nil; when within has passed it fails the test
// with what and try's last error.
func poll(t testing.TB, within, every time.Duration, what string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		<-tick.C
	}
}
