// Package queue is everything smallscale does with NATS JetStream: the streams, consumers and
// buckets, the job, result and status types, and the calls that publish, pull and acknowledge
// them. It knows nothing of libvirt. Submitters and CI systems can use it as a client library.
package queue

import (
	"regexp"
	"strings"
)

// DefaultPrefix names every subject, stream and bucket unless configured otherwise.
const DefaultPrefix = "smallscale"

// Names derives the JetStream names from one prefix, so that several smallscale installations
// can share a NATS account.
type Names struct{ Prefix string }

func (n Names) prefix() string {
	if n.Prefix == "" {
		return DefaultPrefix
	}
	return n.Prefix
}

func (n Names) upper() string { return strings.ToUpper(strings.ReplaceAll(n.prefix(), "-", "_")) }

// JobsStream is the work-queue stream holding jobs not yet acknowledged.
func (n Names) JobsStream() string { return n.upper() + "_JOBS" }

// ResultsStream keeps one terminal result per job for a while.
func (n Names) ResultsStream() string { return n.upper() + "_RESULTS" }

// LogsStream keeps the ordered output chunks of every job for a while.
func (n Names) LogsStream() string { return n.upper() + "_LOGS" }

// ExhaustedStream keeps the server's max-deliveries advisories for the jobs stream until a
// worker answered the job.
func (n Names) ExhaustedStream() string { return n.upper() + "_EXHAUSTED" }

// ExhaustedAdvisories is the subject of those advisories, for every runner's consumer.
func (n Names) ExhaustedAdvisories() string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + n.JobsStream() + ".*"
}

// StatusBucket is the KV bucket with one status entry per job.
func (n Names) StatusBucket() string { return n.prefix() + "-jobs" }

// JobSubject is where jobs for one runner are published.
func (n Names) JobSubject(runner string) string { return n.prefix() + ".jobs." + runner }

// ResultSubject carries the terminal result of one job.
func (n Names) ResultSubject(jobID string) string { return n.prefix() + ".results." + jobID }

// LogSubject carries the output chunks of one job.
func (n Names) LogSubject(jobID string) string { return n.prefix() + ".logs." + jobID }

// CancelSubject is where a cancel request for one job is announced.
func (n Names) CancelSubject(jobID string) string { return n.prefix() + ".cancel." + jobID }

// ArtifactsBucket is the object store holding job inputs and artifacts.
func (n Names) ArtifactsBucket() string { return n.prefix() + "-artifacts" }

// InputObject names the tar of a job's inputs in the artifacts bucket.
func InputObject(jobID string) string { return jobID + "/input.tar" }

// ArtifactObject names one artifact of a job in the artifacts bucket.
func ArtifactObject(jobID, path string) string { return jobID + "/output/" + path }

// RunnerConsumer is the durable pull consumer shared by every worker serving a runner.
func (n Names) RunnerConsumer(runner string) string { return "runner-" + runner }

var runnerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// MaxRunnerNameLen keeps domain names and socket paths derived from a runner name short.
const MaxRunnerNameLen = 64

// ValidRunnerName reports whether name can name a runner: [a-z0-9][a-z0-9_-]*, at most 64 bytes.
func ValidRunnerName(name string) bool {
	return len(name) <= MaxRunnerNameLen && runnerName.MatchString(name)
}
