package vmrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
)

// Config is what the executor needs from the host.
type Config struct {
	URI         string        // libvirt URI, e.g. qemu:///system
	Pool        string        // storage pool for the overlays; created as a dir pool when missing
	PoolDir     string        // where a created pool keeps its volumes
	SocketDir   string        // where the per-job output sockets live
	DomainType  string        // overrides every runner's domain type when set (e.g. "qemu")
	BootTimeout time.Duration // domain start until the guest agent answers
	Worker      string        // this worker's name, written into each domain's metadata
	LeftoverAge time.Duration // an overlay without a domain this old is a crash's leftover
}

// Job is what the executor needs to know of a job.
type Job struct {
	ID      string
	Script  string
	Env     map[string]string
	Timeout time.Duration // the script's run time; boot is bounded by Config.BootTimeout
	// Input, when not nil, is a tar stream of InputSize bytes unpacked into the guest's
	// working directory before the script starts.
	Input     io.Reader
	InputSize int64
	// Collect, when not nil, receives the guest's output directory as a tar stream after the
	// script exited on its own; it must read the stream to the end of the archive.
	Collect func(tar io.Reader) error
	// OnPhase, when not nil, is told when the job enters a phase: "booting", "running",
	// "collecting".
	OnPhase func(phase string)
}

func (j Job) phase(name string) {
	if j.OnPhase != nil {
		j.OnPhase(name)
	}
}

// Outcome is how a job's script ended.
type Outcome struct {
	ExitCode int
	// OutputIncomplete is set when the script exited but its output stream did not drain.
	OutputIncomplete                              bool
	Prepare, Boot, Inputs, Run, Collect, Teardown time.Duration
}

// Executor runs jobs in fresh libvirt domains. It is safe for concurrent use.
type Executor struct {
	cfg  Config
	mu   sync.Mutex // guards conn and pool, which change when libvirtd comes back
	conn *libvirt.Connect
	pool *libvirt.StoragePool
}

// pollInterval paces guest-ping during boot and guest-exec-status while the script runs.
const pollInterval = 200 * time.Millisecond

// drainTimeout bounds the wait for the script's last output after it exited.
const drainTimeout = 5 * time.Second

// teardownTimeout bounds destroying the domain and deleting the overlay of one job.
const teardownTimeout = 30 * time.Second

// Open connects to libvirt and makes sure the storage pool exists.
func Open(cfg Config) (*Executor, error) {
	if err := os.MkdirAll(cfg.SocketDir, 0o700); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	conn, err := connect(cfg.URI)
	if err != nil {
		return nil, err
	}
	pool, err := ensurePool(conn, cfg.Pool, cfg.PoolDir)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Executor{cfg: cfg, conn: conn, pool: pool}, nil
}

// Close releases the libvirt connection.
func (e *Executor) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool.Free()
	_, err := e.conn.Close()
	return err
}

// Run boots a fresh domain for job from runner r, runs the script, copies its output to out
// while it runs, and destroys the domain and its overlay on every path. out is not written to
// after Run returns. A script that ran and exited, whatever its code, is a nil error; a script
// over its timeout is ErrTimeout; ctx ending is ctx's error. The caller must own the job (a
// claimed attempt): a VM left by an earlier attempt of the same job is destroyed and replaced.
func (e *Executor) Run(ctx context.Context, r *Runner, job Job, out io.Writer) (o Outcome, err error) {
	start := time.Now()
	domName := DomainName(r.Name, job.ID)
	volName := VolumeName(domName)

	volDoc, err := r.VolumeXML(volName)
	if err != nil {
		return o, err
	}
	conn, pool, err := e.live(false)
	if err != nil {
		return o, err
	}
	overlay, err := createVolume(pool, volName, volDoc)
	if isVolumeExists(err) {
		// Left by an earlier attempt of this job (names are per job): one whose teardown failed,
		// or one still running whose worker lost the job to this attempt (the caller claimed the
		// job before Run, so an earlier attempt's VM is stale; one libvirtd restart is enough to
		// lose AUTODESTROY's hold on it). Its domain goes first, then the overlay.
		if err := destroyDomain(conn, domName); err != nil {
			return o, err
		}
		if err := deleteVolume(pool, volName); err != nil {
			return o, err
		}
		overlay, err = createVolume(pool, volName, volDoc)
	}
	if err != nil {
		return o, err
	}
	var dom *libvirt.Domain
	defer func() {
		t := time.Now()
		terr := e.teardown(dom, domName, volName)
		o.Teardown = time.Since(t)
		if terr != nil {
			err = errors.Join(err, terr)
		}
	}()

	sock := filepath.Join(e.cfg.SocketDir, job.ID+".log")
	dataSock := filepath.Join(e.cfg.SocketDir, job.ID+".data")
	doc, err := r.DomainXML(JobSpec{
		DomainName: domName, OverlayPath: overlay, LogSocket: sock, DataSocket: dataSock,
		JobID: job.ID, Runner: r.Name, Worker: e.cfg.Worker, DomainType: e.cfg.DomainType,
	})
	if err != nil {
		return o, err
	}
	// AUTODESTROY ties the domain to this connection: if the worker dies, libvirt destroys its
	// VMs instead of leaving them running.
	job.phase("booting")
	dom, err = conn.DomainCreateXML(doc, libvirt.DOMAIN_START_AUTODESTROY)
	if err != nil {
		return o, fmt.Errorf("%w: start domain %s: %v", ErrLibvirt, domName, err)
	}
	defer os.Remove(sock)
	defer os.Remove(dataSock)
	o.Prepare = time.Since(start)
	dataConn, err := net.Dial("unix", dataSock)
	if err != nil {
		return o, fmt.Errorf("%w: connect data channel %s: %v", ErrLibvirt, dataSock, err)
	}
	// The goroutines that move files end when the connection closes; Run joins them, so that
	// job.Input and job.Collect are left alone after it returns.
	var transfers sync.WaitGroup
	defer transfers.Wait()
	defer dataConn.Close()

	// QEMU listens on the socket before the domain start returns; connect before the guest can
	// write, so nothing is lost.
	logConn, err := net.Dial("unix", sock)
	if err != nil {
		return o, fmt.Errorf("%w: connect output channel %s: %v", ErrLibvirt, sock, err)
	}
	marker := newMarker()
	var (
		wg      sync.WaitGroup
		drained = make(chan bool, 1)
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen, _ := copyUntilMarker(out, logConn, []byte(marker))
		drained <- seen
	}()
	// Closing the socket ends the copy on every path; the join makes sure out is left alone
	// after Run returns.
	defer wg.Wait()
	defer logConn.Close()

	a := agent{dom: dom}
	bootStart := time.Now()
	bootCtx, cancel := context.WithTimeout(ctx, e.cfg.BootTimeout)
	err = a.waitReady(bootCtx, pollInterval, conn)
	cancel()
	o.Boot = time.Since(bootStart)
	if err != nil {
		if ctx.Err() != nil {
			return o, ctx.Err()
		}
		return o, fmt.Errorf("%w within %s", err, e.cfg.BootTimeout)
	}

	env := guestEnv(r, job, marker)
	if job.Input != nil {
		t := time.Now()
		err := sendInputs(ctx, a, r.Guest.InputCommand, env, dataConn, job, &transfers)
		o.Inputs = time.Since(t)
		if err != nil {
			return o, err
		}
	}

	job.phase("running")
	runStart := time.Now()
	if err := a.writeFile(r.Guest.ScriptPath, []byte(job.Script)); err != nil {
		return o, err
	}
	pid, err := a.exec(r.Guest.Command, env)
	if err != nil {
		return o, err
	}
	o.ExitCode, o.OutputIncomplete, err = waitScript(ctx, a, pid, job.Timeout, drained)
	o.Run = time.Since(runStart)
	if err != nil || job.Collect == nil {
		return o, err
	}

	job.phase("collecting")
	t := time.Now()
	err = collect(ctx, a, r.Guest.OutputCommand, env, dataConn, job, &transfers)
	o.Collect = time.Since(t)
	return o, err
}

// waitScript waits for the script to exit and its output to drain, within timeout.
func waitScript(ctx context.Context, a agent, pid int, timeout time.Duration, drained <-chan bool) (code int, incomplete bool, err error) {

	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var seen *bool
	for {
		select {
		case s := <-drained:
			seen = &s
		case <-tick.C:
		case <-runCtx.Done():
			if ctx.Err() != nil {
				return 0, false, ctx.Err()
			}
			return 0, false, fmt.Errorf("%w after %s", ErrTimeout, timeout)
		}
		st, err := a.status(pid)
		if err != nil {
			return 0, false, err
		}
		if !st.Exited {
			continue
		}
		if seen == nil {
			select {
			case s := <-drained:
				seen = &s
			case <-time.After(drainTimeout):
				f := false
				seen = &f
			}
		}
		return st.code(), !*seen, nil
	}
}

// sendInputs runs the runner's input command, which reads job.InputSize bytes of tar from the
// data channel and unpacks them, while the input streams into the channel.
func sendInputs(ctx context.Context, a agent, argv, env []string, conn net.Conn, job Job, wg *sync.WaitGroup) error {
	env = append(slices.Clone(env), fmt.Sprintf("CI_INPUT_SIZE=%d", job.InputSize))
	pid, err := a.exec(argv, env)
	if err != nil {
		return fmt.Errorf("start input command: %w", err)
	}
	copied := make(chan error, 1)
	wg.Go(func() {
		_, err := io.Copy(conn, io.LimitReader(job.Input, job.InputSize))
		copied <- err
	})
	st, err := waitExit(ctx, a, pid, job.Timeout)
	if err != nil {
		return fmt.Errorf("unpack inputs: %w", err)
	}
	if code := st.code(); code != 0 {
		return fmt.Errorf("%w: unpacking the inputs in the guest failed with exit status %d", ErrTransfer, code)
	}
	select {
	case err := <-copied:
		if err != nil {
			return fmt.Errorf("%w: send inputs: %v", ErrTransfer, err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// collect runs the runner's output command, which writes the output directory as tar to the
// data channel, and hands the stream to job.Collect.
func collect(ctx context.Context, a agent, argv, env []string, conn net.Conn, job Job, wg *sync.WaitGroup) error {
	pid, err := a.exec(argv, env)
	if err != nil {
		return fmt.Errorf("start output command: %w", err)
	}
	collected := make(chan error, 1)
	wg.Go(func() {
		err := job.Collect(conn)
		collected <- err
		if err == nil {
			// tar pads its archive past the end marker; read the rest so the writer can finish.
			_, _ = io.Copy(io.Discard, conn)
		}
	})
	// Returning early stops the poller too; Run joins it before the domain is freed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited := make(chan error, 1)
	var st execStatus
	wg.Go(func() {
		var err error
		st, err = waitExit(ctx, a, pid, job.Timeout)
		exited <- err
	})
	// A collector that fails (a limit, the object store) ends the job at once; otherwise both
	// the guest's command and the collector must finish, the collector soon after the command.
	var drain <-chan time.Time
	for done := 0; done < 2; done++ {
		select {
		case err := <-collected:
			if err != nil {
				return err
			}
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("collect artifacts: %w", err)
			}
			if code := st.code(); code != 0 {
				return fmt.Errorf("%w: packing the output directory in the guest failed with exit status %d", ErrTransfer, code)
			}
			drain = time.After(drainTimeout)
		case <-drain:
			return fmt.Errorf("%w: the guest's output command ended but its archive did not arrive within %s", ErrTransfer, drainTimeout)
		}
	}
	return nil
}

// waitExit polls a guest process until it exits, within timeout.
func waitExit(ctx context.Context, a agent, pid int, timeout time.Duration) (execStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		st, err := a.status(pid)
		if err != nil || st.Exited {
			return st, err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return st, fmt.Errorf("%w after %s", ErrTimeout, timeout)
			}
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// teardown destroys the domain and deletes the overlay, even when the job's context is gone.
// When libvirt fails (libvirtd restarting under the job) it tries again on a fresh connection,
// for up to teardownTimeout.
func (e *Executor) teardown(dom *libvirt.Domain, domName, volName string) error {
	if dom != nil {
		defer dom.Free()
	}
	deadline := time.Now().Add(teardownTimeout)
	for fresh := false; ; fresh = true {
		conn, pool, err := e.live(fresh)
		if err == nil {
			var errs []error
			if dom != nil {
				errs = append(errs, destroyDomain(conn, domName))
			}
			errs = append(errs, deleteVolume(pool, volName))
			if err = errors.Join(errs...); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second) // libvirtd is coming back; nothing to wait on but time
	}
}

// live returns a connection that answers and its pool, connecting anew when libvirtd went away
// (or when fresh is set). An old connection is not closed: a job may still hold objects of it,
// and its calls then fail instead of touching freed memory.
func (e *Executor) live(fresh bool) (*libvirt.Connect, *libvirt.StoragePool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !fresh {
		if alive, err := e.conn.IsAlive(); err == nil && alive {
			return e.conn, e.pool, nil
		}
	}
	conn, err := connect(e.cfg.URI)
	if err != nil {
		return nil, nil, err
	}
	pool, err := ensurePool(conn, e.cfg.Pool, e.cfg.PoolDir)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	e.conn, e.pool = conn, pool
	return conn, pool, nil
}

// guestEnv is the script's environment: the runner's, the job's, then smallscale's own.
func guestEnv(r *Runner, job Job, marker string) []string {
	env := maps.Clone(r.Guest.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, job.Env)
	maps.Copy(env, map[string]string{
		"CI":         "true",
		"CI_JOB_ID":  job.ID,
		"CI_RUNNER":  r.Name,
		"CI_OUTPUT":  r.Guest.OutputDir,
		"CI_WORKDIR": r.Guest.WorkDir,
		"CI_SCRIPT":  r.Guest.ScriptPath,
		"CI_LOG":     r.Guest.LogPort,
		"CI_DATA":    r.Guest.DataPort,
		"CI_END":     marker,
	})
	list := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return list
}

// newMarker returns a random end-of-output marker a script cannot print by accident.
func newMarker() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "smallscale-end-" + hex.EncodeToString(b)
}
