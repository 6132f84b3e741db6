package queue

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// Inputs names the tar of a job's input files in the artifacts bucket.
type Inputs struct {
	Object string `json:"object"`
	Size   int64  `json:"size"`
}

// Artifact is one file (or link) a job left in its output directory.
type Artifact struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	Mode   uint32 `json:"mode"`
	// Object names the content in the artifacts bucket; empty for a link.
	Object string `json:"object,omitempty"`
	// Link is the target of a symbolic link, which points inside the output directory.
	Link string `json:"link,omitempty"`
}

// Refused is an entry of the output directory that was not collected.
type Refused struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// PutObject streams r into the artifacts bucket under name and returns its size. It never
// holds more than a chunk of r in memory.
func (q *Queue) PutObject(ctx context.Context, name string, r io.Reader) (int64, error) {
	info, err := q.objects.Put(ctx, jetstream.ObjectMeta{Name: name}, r)
	if err != nil {
		return 0, fmt.Errorf("store object %s: %w", name, err)
	}
	return int64(info.Size), nil
}

// GetObject opens an object of the artifacts bucket for streaming. The reader checks the
// object's digest at its end.
func (q *Queue) GetObject(ctx context.Context, name string) (io.ReadCloser, error) {
	r, err := q.objects.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: object %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", name, err)
	}
	return r, nil
}

// DeleteObject removes an object; one already gone is not an error.
func (q *Queue) DeleteObject(ctx context.Context, name string) error {
	err := q.objects.Delete(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete object %s: %w", name, err)
	}
	return nil
}
