package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/smallscale-ci/smallscale/queue"
)

// config is the worker's whole configuration, read once from SMALLSCALE_* variables.
type config struct {
	NATSURL     string        `envconfig:"NATS_URL" desc:"NATS server URL(s), comma separated; empty starts an embedded JetStream server"`
	NATSCreds   string        `envconfig:"NATS_CREDS" desc:"NATS credentials file (.creds)"`
	NATSListen  string        `envconfig:"NATS_LISTEN" default:"127.0.0.1:4222" desc:"listen address of the embedded NATS server"`
	DataDir     string        `envconfig:"DATA_DIR" default:"/var/lib/smallscale" desc:"state directory: the embedded server's store lives in DATA_DIR/nats"`
	Prefix      string        `envconfig:"PREFIX" default:"smallscale" desc:"prefix of every subject, stream and bucket"`
	LibvirtURI  string        `envconfig:"LIBVIRT_URI" default:"qemu:///system" desc:"libvirt connection URI"`
	RunnersDir  string        `envconfig:"RUNNERS_DIR" default:"./runners" desc:"directory with one folder per runner (vm.xml, volume.xml, runner.json)"`
	Runners     []string      `envconfig:"RUNNERS" desc:"runners to serve, comma separated; empty serves every valid runner in RUNNERS_DIR"`
	Pool        string        `envconfig:"POOL" default:"smallscale" desc:"libvirt storage pool for job overlays; created as a dir pool when missing"`
	PoolDir     string        `envconfig:"POOL_DIR" default:"/var/lib/smallscale/pool" desc:"directory of the pool when the worker creates it"`
	SocketDir   string        `envconfig:"SOCKET_DIR" default:"/run/smallscale" desc:"directory of the per-job output sockets"`
	Concurrency int           `envconfig:"CONCURRENCY" default:"2" desc:"jobs run at once on this host"`
	DomainType  string        `envconfig:"DOMAIN_TYPE" desc:"override every runner's domain type (e.g. qemu for TCG where KVM is unusable)"`
	BootTimeout time.Duration `envconfig:"BOOT_TIMEOUT" default:"2m" desc:"domain start until the guest agent answers"`
	JobTimeout  time.Duration `envconfig:"JOB_TIMEOUT" default:"30m" desc:"script run time for jobs that set no timeout"`
	MaxInput    int64         `envconfig:"MAX_INPUT_BYTES" default:"1073741824" desc:"total size of a job's input files at most (0: no limit)"`
	MaxArtifact int64         `envconfig:"MAX_ARTIFACT_BYTES" default:"1073741824" desc:"total size of a job's artifacts at most; a job may ask for less (0: no limit)"`
	AckWait     time.Duration `envconfig:"ACK_WAIT" default:"2m" desc:"a job whose worker stops acking is redelivered after this"`
	MaxAttempts int           `envconfig:"MAX_ATTEMPTS" default:"3" desc:"attempts of one job at most: a VM, agent, libvirt or storage failure is retried with back-off until then"`
	Grace       time.Duration `envconfig:"SHUTDOWN_GRACE" default:"10m" desc:"after SIGTERM, how long running jobs may go on before their VMs are destroyed and the jobs handed back"`
	LeftoverAge time.Duration `envconfig:"LEFTOVER_AGE" default:"1m" desc:"at start-up, an overlay of smallscale's naming that no domain uses and is this old is removed"`
	Name        string        `envconfig:"WORKER_NAME" desc:"this worker's name (default: the host name)"`
	LogFormat   string        `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`
}

func (c *config) validate() error {
	var errs []error
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("SMALLSCALE_CONCURRENCY must be at least 1, is %d", c.Concurrency))
	}
	if c.BootTimeout <= 0 {
		errs = append(errs, errors.New("SMALLSCALE_BOOT_TIMEOUT must be positive"))
	}
	if c.JobTimeout <= 0 || c.JobTimeout > queue.MaxTimeout {
		errs = append(errs, fmt.Errorf("SMALLSCALE_JOB_TIMEOUT must be in (0, %s]", queue.MaxTimeout))
	}
	if c.AckWait < 3*time.Second {
		errs = append(errs, errors.New("SMALLSCALE_ACK_WAIT must be at least 3s (progress acks go every third of it)"))
	}
	if c.MaxInput < 0 || c.MaxArtifact < 0 {
		errs = append(errs, errors.New("SMALLSCALE_MAX_INPUT_BYTES and SMALLSCALE_MAX_ARTIFACT_BYTES must not be negative"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("SMALLSCALE_MAX_ATTEMPTS must be at least 1"))
	}
	if c.LeftoverAge < time.Second {
		errs = append(errs, errors.New("SMALLSCALE_LEFTOVER_AGE must be at least 1s (another worker's overlay lives a moment before its domain)"))
	}
	if c.Grace < 0 {
		errs = append(errs, errors.New("SMALLSCALE_SHUTDOWN_GRACE must not be negative"))
	}
	switch c.DomainType {
	case "", "qemu", "kvm":
	default:
		errs = append(errs, fmt.Errorf("SMALLSCALE_DOMAIN_TYPE %q: use qemu, kvm or leave it empty", c.DomainType))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("SMALLSCALE_LOG_FORMAT %q: use text or json", c.LogFormat))
	}
	if st, err := os.Stat(c.RunnersDir); err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("SMALLSCALE_RUNNERS_DIR %q is not a directory", c.RunnersDir))
	}
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			errs = append(errs, fmt.Errorf("SMALLSCALE_WORKER_NAME is empty and the host name is unknown: %w", err))
		}
		c.Name = h
	}
	if strings.ContainsAny(c.Name, " \t\n.*>") {
		errs = append(errs, fmt.Errorf("SMALLSCALE_WORKER_NAME %q must not contain spaces, '.', '*' or '>'", c.Name))
	}
	return errors.Join(errs...)
}
