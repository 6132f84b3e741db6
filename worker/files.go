package worker

import (
	"context"
	"fmt"
	"io"

	"github.com/smallscale-ci/smallscale/files"
	"github.com/smallscale-ci/smallscale/queue"
)

// openInputs checks the job's input tar (safe names, size within limit) in a first pass over
// the object store, then opens it again for the guest. The guest only ever sees checked input.
func (w *Worker) openInputs(ctx context.Context, job queue.Job) (io.ReadCloser, error) {
	in := job.Inputs
	if w.cfg.MaxInputBytes > 0 && in.Size > w.cfg.MaxInputBytes {
		return nil, fmt.Errorf("inputs are %d bytes, over this worker's limit of %d", in.Size, w.cfg.MaxInputBytes)
	}
	r, err := w.q.GetObject(ctx, in.Object)
	if err != nil {
		return nil, fmt.Errorf("inputs: %w", err)
	}
	counted := &files.CountingReader{R: r}
	err = files.Check(counted, w.cfg.MaxInputBytes)
	if err == nil {
		_, err = io.Copy(io.Discard, counted) // to the end, so the object's digest is checked
	}
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("inputs refused: %w", err)
	}
	if counted.N != in.Size {
		return nil, fmt.Errorf("inputs: object %s holds %d bytes, the job says %d", in.Object, counted.N, in.Size)
	}
	return w.q.GetObject(ctx, in.Object)
}

// artifactCollector stores what a job left in its output directory, one object per file.
type artifactCollector struct {
	q         *queue.Queue
	jobID     string
	limit     int64
	artifacts []queue.Artifact
	refused   []queue.Refused
}

func (c *artifactCollector) collect(ctx context.Context, tar io.Reader) error {
	entries, refused, err := files.Collect(tar, c.limit, func(path string, content io.Reader) error {
		_, err := c.q.PutObject(ctx, queue.ArtifactObject(c.jobID, path), content)
		return err
	})
	for _, e := range entries {
		a := queue.Artifact{Path: e.Path, Size: e.Size, SHA256: e.SHA256, Mode: e.Mode, Link: e.Link}
		if e.Link == "" {
			a.Object = queue.ArtifactObject(c.jobID, e.Path)
		}
		c.artifacts = append(c.artifacts, a)
	}
	for _, r := range refused {
		c.refused = append(c.refused, queue.Refused{Path: r.Path, Reason: r.Reason})
	}
	return err
}

// artifactLimit is the worker's limit, lowered by the job's own when it sets one.
func (w *Worker) artifactLimit(job queue.Job) int64 {
	limit := w.cfg.MaxArtifactBytes
	if job.MaxArtifactBytes > 0 && (limit <= 0 || job.MaxArtifactBytes < limit) {
		limit = job.MaxArtifactBytes
	}
	return limit
}
