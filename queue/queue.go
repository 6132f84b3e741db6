package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Queue is a handle on one smallscale installation's streams and buckets.
type Queue struct {
	js      jetstream.JetStream
	names   Names
	status  jetstream.KeyValue
	objects jetstream.ObjectStore
}

// Retention says how long finished jobs' records stay readable.
type Retention struct {
	Prefix       string
	ResultMaxAge time.Duration // default 7 days
	LogMaxAge    time.Duration // default 7 days
	LogMaxBytes  int64         // default 1 GiB
	StatusMaxAge time.Duration // default 7 days
	Replicas     int           // default 1
}

func (r Retention) withDefaults() Retention {
	if r.ResultMaxAge <= 0 {
		r.ResultMaxAge = 7 * 24 * time.Hour
	}
	if r.LogMaxAge <= 0 {
		r.LogMaxAge = 7 * 24 * time.Hour
	}
	if r.LogMaxBytes <= 0 {
		r.LogMaxBytes = 1 << 30
	}
	if r.StatusMaxAge <= 0 {
		r.StatusMaxAge = 7 * 24 * time.Hour
	}
	if r.Replicas <= 0 {
		r.Replicas = 1
	}
	return r
}

// DuplicateWindow is how long a repeated publish of the same job id is dropped.
const DuplicateWindow = 2 * time.Minute

// Setup creates or updates the streams and the status bucket. It is idempotent; workers call it
// at start-up.
func Setup(ctx context.Context, js jetstream.JetStream, r Retention) (*Queue, error) {
	r = r.withDefaults()
	n := Names{Prefix: r.Prefix}
	streams := []jetstream.StreamConfig{{
		Name:        n.JobsStream(),
		Description: "smallscale jobs waiting for a worker",
		Subjects:    []string{n.JobSubject("*")},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  DuplicateWindow,
		Replicas:    r.Replicas,
	}, {
		Name:        n.ResultsStream(),
		Description: "smallscale job results",
		Subjects:    []string{n.ResultSubject("*")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      r.ResultMaxAge,
		Duplicates:  DuplicateWindow,
		Replicas:    r.Replicas,
	}, {
		Name:        n.LogsStream(),
		Description: "smallscale job output",
		Subjects:    []string{n.LogSubject("*")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      r.LogMaxAge,
		MaxBytes:    r.LogMaxBytes,
		Replicas:    r.Replicas,
	}, {
		Name:        n.ExhaustedStream(),
		Description: "max-deliveries advisories of smallscale jobs, until a worker answered the job",
		Subjects:    []string{n.ExhaustedAdvisories()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      r.ResultMaxAge,
		Replicas:    r.Replicas,
	}}
	for _, cfg := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("set up stream %s: %w", cfg.Name, err)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      n.StatusBucket(),
		Description: "smallscale job status",
		TTL:         r.StatusMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    r.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", n.StatusBucket(), err)
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      n.ArtifactsBucket(),
		Description: "smallscale job inputs and artifacts",
		TTL:         r.ResultMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    r.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("set up object store %s: %w", n.ArtifactsBucket(), err)
	}
	return &Queue{js: js, names: n, status: kv, objects: obs}, nil
}

// Open binds to streams a worker has set up, without changing them: what a submitter does.
func Open(ctx context.Context, js jetstream.JetStream, prefix string) (*Queue, error) {
	n := Names{Prefix: prefix}
	for _, s := range []string{n.JobsStream(), n.ResultsStream(), n.LogsStream()} {
		if _, err := js.Stream(ctx, s); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("%w: stream %s does not exist (start a worker first)", ErrNotSetUp, s)
			}
			return nil, fmt.Errorf("open stream %s: %w", s, err)
		}
	}
	kv, err := js.KeyValue(ctx, n.StatusBucket())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", n.StatusBucket(), err)
	}
	obs, err := js.ObjectStore(ctx, n.ArtifactsBucket())
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", n.ArtifactsBucket(), err)
	}
	return &Queue{js: js, names: n, status: kv, objects: obs}, nil
}

// Names returns the subjects and streams this queue uses.
func (q *Queue) Names() Names { return q.names }
