// Command worker serves one hypervisor host: it pulls smallscale jobs from NATS JetStream and
// runs each in a fresh libvirt VM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/internal/natsserver"
	"github.com/smallscale-ci/smallscale/queue"
	"github.com/smallscale-ci/smallscale/vmrun"
	"github.com/smallscale-ci/smallscale/worker"
)

const usage = `Usage:
  worker              serve jobs until SIGTERM or SIGINT (a second signal stops running jobs
                      and hands them back to the queue)
  worker check        validate every runner in SMALLSCALE_RUNNERS_DIR, one line each
  worker render NAME  print the domain XML and volume XML a job of runner NAME would get

Exit status: 0 done, 1 runtime failure (or a runner that fails 'check'), 2 bad configuration
or usage.

`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		var c config
		tw := tabwriter.NewWriter(stderr, 2, 4, 2, ' ', 0)
		_ = envconfig.Usagef("smallscale", &c, tw, envconfig.DefaultTableFormat)
		tw.Flush()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var cfg config
	if err := envconfig.Process("smallscale", &cfg); err != nil {
		fmt.Fprintf(stderr, "worker: configuration: %v\n", err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "worker: configuration:\n%v\n", err)
		return 2
	}
	switch cmd := fs.Arg(0); cmd {
	case "":
		return serve(cfg, stderr)
	case "check":
		return check(cfg, stdout)
	case "render":
		if fs.NArg() != 2 {
			fmt.Fprintln(stderr, "worker: usage: worker render NAME")
			return 2
		}
		return render(cfg, fs.Arg(1), stdout, stderr)
	default:
		fmt.Fprintf(stderr, "worker: unknown command %q (want check or render; -h explains)\n", cmd)
		return 2
	}
}

// loadRunners loads the configured runners; broken ones are reported and left out.
func loadRunners(cfg config, log *slog.Logger) (map[string]*vmrun.Runner, error) {
	all, problems, err := vmrun.LoadRunners(cfg.RunnersDir)
	if err != nil {
		return nil, err
	}
	for name := range all {
		if !queue.ValidRunnerName(name) {
			problems[name] = fmt.Errorf("runner name %q must match [a-z0-9][a-z0-9_-]*", name)
			delete(all, name)
		}
	}
	for name, perr := range problems {
		log.Error("runner left out", "runner", name, "err", perr)
	}
	if len(cfg.Runners) == 0 {
		return all, nil
	}
	chosen := make(map[string]*vmrun.Runner)
	for _, name := range cfg.Runners {
		r, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("SMALLSCALE_RUNNERS names %q, which is not a valid runner in %s", name, cfg.RunnersDir)
		}
		chosen[name] = r
	}
	return chosen, nil
}

func serve(cfg config, stderr io.Writer) int {
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h).With("worker", cfg.Name)

	// The first signal stops pulling; running jobs then have the grace period. A second signal,
	// or the end of the grace, destroys their VMs and hands the jobs back to the queue.
	stop, stopCancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopCancel()
	jobs, jobsCancel := context.WithCancel(context.Background())
	defer jobsCancel()
	go func() {
		<-stop.Done()
		log.Info("stopping: no new jobs; running jobs have the grace period", "grace", cfg.Grace)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		select {
		case <-sig:
			log.Warn("second signal: stopping running jobs")
		case <-time.After(cfg.Grace):
			log.Warn("grace period over: stopping running jobs")
		case <-jobs.Done():
			return
		}
		jobsCancel()
	}()

	if err := serveWith(stop, jobs, cfg, log); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	return 0
}

func serveWith(ctx, jobCtx context.Context, cfg config, log *slog.Logger) error {
	runners, err := loadRunners(cfg, log)
	if err != nil {
		return err
	}
	if len(runners) == 0 {
		return fmt.Errorf("no valid runner in %s (`worker check` says why)", cfg.RunnersDir)
	}

	url := cfg.NATSURL
	if url == "" {
		s, err := natsserver.Start(cfg.NATSListen, filepath.Join(cfg.DataDir, "nats"))
		if err != nil {
			return err
		}
		defer s.Shutdown()
		url = s.ClientURL()
		log.Info("embedded NATS server started", "url", url, "store", filepath.Join(cfg.DataDir, "nats"))
	}
	opts := []nats.Option{nats.Name("smallscale-worker " + cfg.Name), nats.MaxReconnects(-1)}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	q, err := queue.Setup(ctx, js, queue.Retention{Prefix: cfg.Prefix})
	if err != nil {
		return err
	}

	exec, err := vmrun.Open(vmrun.Config{
		URI: cfg.LibvirtURI, Pool: cfg.Pool, PoolDir: cfg.PoolDir, SocketDir: cfg.SocketDir,
		DomainType: cfg.DomainType, BootTimeout: cfg.BootTimeout, Worker: cfg.Name,
		LeftoverAge: cfg.LeftoverAge,
	})
	if err != nil {
		return err
	}
	defer exec.Close()
	doms, vols, err := exec.CleanLeftovers()
	if err != nil {
		log.Warn("could not remove every leftover of an earlier run", "err", err)
	}
	if doms+vols > 0 {
		log.Info("removed leftovers of an earlier run", "domains", doms, "overlays", vols)
	}

	w, err := worker.New(worker.Config{
		Name: cfg.Name, Concurrency: cfg.Concurrency, DefaultTimeout: cfg.JobTimeout,
		MaxInputBytes: cfg.MaxInput, MaxArtifactBytes: cfg.MaxArtifact,
		Consumer: queue.ConsumerOptions{AckWait: cfg.AckWait, MaxDeliver: cfg.MaxAttempts},
	}, q, exec, runners, log)
	if err != nil {
		return err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range runners {
			if !yield(n) {
				return
			}
		}
	})
	log.Info("serving", "runners", strings.Join(names, ","), "nats", url, "libvirt", cfg.LibvirtURI)
	return w.Run(ctx, jobCtx)
}

func check(cfg config, stdout io.Writer) int {
	all, problems, err := vmrun.LoadRunners(cfg.RunnersDir)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL %s: %v\n", cfg.RunnersDir, err)
		return 1
	}
	var names []string
	for n := range all {
		names = append(names, n)
	}
	for n := range problems {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		fmt.Fprintf(stdout, "FAIL %s: no runner folders (each needs a vm.xml)\n", cfg.RunnersDir)
		return 1
	}
	status := 0
	for _, n := range names {
		if perr, bad := problems[n]; bad {
			fmt.Fprintf(stdout, "FAIL %-16s %v\n", n, perr)
			status = 1
			continue
		}
		if !queue.ValidRunnerName(n) {
			fmt.Fprintf(stdout, "FAIL %-16s name must match [a-z0-9][a-z0-9_-]*\n", n)
			status = 1
			continue
		}
		fmt.Fprintf(stdout, "ok   %-16s base %s\n", n, all[n].BaseImage)
	}
	return status
}

func render(cfg config, name string, stdout, stderr io.Writer) int {
	r, err := vmrun.LoadRunner(filepath.Join(cfg.RunnersDir, name))
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 1
	}
	job, err := queue.NewJob(name, "true")
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 1
	}
	dom := vmrun.DomainName(name, job.ID)
	vol := vmrun.VolumeName(dom)
	volXML, err := r.VolumeXML(vol)
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 1
	}
	domXML, err := r.DomainXML(vmrun.JobSpec{
		DomainName: dom, OverlayPath: filepath.Join(cfg.PoolDir, vol),
		LogSocket:  filepath.Join(cfg.SocketDir, job.ID+".log"),
		DataSocket: filepath.Join(cfg.SocketDir, job.ID+".data"),
		JobID:      job.ID, Runner: name, Worker: cfg.Name, DomainType: cfg.DomainType,
	})
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "<!-- domain of a job with id %s -->\n%s\n<!-- its overlay volume -->\n%s\n", job.ID, domXML, volXML)
	return 0
}
