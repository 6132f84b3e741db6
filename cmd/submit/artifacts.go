package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/smallscale-ci/smallscale/files"
	"github.com/smallscale-ci/smallscale/queue"
)

const artifactsUsage = `Usage: submit artifacts ID -o DIR [--json]

Downloads what job ID left in $CI_OUTPUT into DIR (created if missing), each file checked
against its SHA-256, links recreated. An artifact whose path or link would lead outside DIR
(an absolute path, "..", a link pointing out, a link already in DIR pointing out) is refused
with a message naming it; nothing is ever written outside DIR, and the other artifacts are
still written. Prints the paths written on stdout; with --json, a JSON array of
{"path", "size", "sha256"} (and "link" for a link).

Exit status:
    0  every artifact was written
    1  some artifact was refused, or the job has not ended yet
` + commonExits + `
Flags:
`

// checkOutputDir refuses a download directory that exists as something else. A missing one is
// created when there is something to write.
func checkOutputDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	return nil
}

// writtenFile is one artifact written into the download directory.
type writtenFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	Link   string `json:"link,omitempty"`
}

// downloadArtifacts writes the result's artifacts into dir through an os.Root, so that no path
// and no link, whether in the result or already in dir, leads a write outside it. Each artifact
// that is refused is told on stderr and counted; the others are still written.
func downloadArtifacts(ctx context.Context, q *queue.Queue, res queue.Result, dir string, stderr io.Writer) ([]writtenFile, int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("artifacts directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("artifacts directory: %w", err)
	}
	defer root.Close()
	written := []writtenFile{}
	failed := 0
	for _, a := range res.Artifacts {
		w, err := writeArtifact(ctx, q, root, a)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "submit: artifact %q refused: %v\n", a.Path, err)
			continue
		}
		written = append(written, w)
	}
	// files.CheckLink judges each link alone, by its text: a link through another link
	// (s -> ., t -> s/..) or through a link already in dir can still lead outside. Once every
	// link is in place, any that does not resolve inside dir goes again. One dangling inside is
	// kept: what it names may simply not exist.
	kept := written[:0]
	for _, w := range written {
		if w.Link != "" {
			if _, err := root.Stat(w.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				_ = root.Remove(w.Path)
				failed++
				fmt.Fprintf(stderr, "submit: artifact %q refused: link to %q does not resolve inside %s: %v\n", w.Path, w.Link, dir, err)
				continue
			}
		}
		kept = append(kept, w)
	}
	return kept, failed, nil
}

func writeArtifact(ctx context.Context, q *queue.Queue, root *os.Root, a queue.Artifact) (writtenFile, error) {
	if a.Link != "" {
		if err := files.WriteLink(root, a.Path, a.Link); err != nil {
			return writtenFile{}, err
		}
		return writtenFile{Path: a.Path, Link: a.Link}, nil
	}
	if err := files.CheckName(a.Path); err != nil { // before fetching anything
		return writtenFile{}, err
	}
	if a.Object == "" {
		return writtenFile{}, errors.New("the result names no content for it")
	}
	r, err := q.GetObject(ctx, a.Object)
	if errors.Is(err, queue.ErrNotFound) {
		return writtenFile{}, fmt.Errorf("its content %s is not in the object store (expired, or never stored)", a.Object)
	}
	if err != nil {
		return writtenFile{}, err
	}
	defer r.Close()
	h := sha256.New()
	body := &startedReader{r: io.TeeReader(r, h)}
	n, err := files.WriteFile(root, a.Path, os.FileMode(a.Mode), body, a.SHA256)
	if err == nil && n != a.Size {
		err = fmt.Errorf("%d bytes arrived, the result says %d", n, a.Size)
	}
	if err != nil {
		if body.started {
			// The file was created and holds something other than the artifact: better none.
			_ = root.Remove(a.Path)
		}
		return writtenFile{}, err
	}
	return writtenFile{Path: a.Path, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// startedReader tells whether anyone read from it, that is, whether WriteFile got as far as
// creating the file.
type startedReader struct {
	r       io.Reader
	started bool
}

func (s *startedReader) Read(p []byte) (int, error) {
	s.started = true
	return s.r.Read(p)
}

// runArtifacts is submit artifacts ID -o DIR.
func runArtifacts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, c := newFlagSet("artifacts", artifactsUsage, stderr)
	var dir string
	fs.StringVar(&dir, "o", "", "directory to write the artifacts into (required)")
	id, code, ok := parseJobCommand(fs, args, stderr)
	if !ok {
		return code
	}
	if dir == "" {
		fmt.Fprintln(stderr, "submit artifacts: -o DIR is required")
		return exitUsage
	}
	if err := checkOutputDir(dir); err != nil {
		fmt.Fprintf(stderr, "submit artifacts: -o: %v\n", err)
		return exitUsage
	}
	nc, q, code, ok := c.open(ctx, stderr)
	if !ok {
		return code
	}
	defer nc.Close()

	res, err := q.Result(ctx, id)
	if errors.Is(err, queue.ErrNotFound) {
		st, serr := q.Status(ctx, id)
		if serr != nil {
			return queueFailure(ctx, serr, stderr)
		}
		if st.State.Terminal() {
			fmt.Fprintf(stderr, "submit: job %s is %s, but its result has expired\n", id, st.State)
			return exitNotFound
		}
		fmt.Fprintf(stderr, "submit: job %s is %s: its artifacts arrive with its result (submit logs -f %s waits for it)\n", id, st.State, id)
		return exitFailed
	}
	if err != nil {
		return queueFailure(ctx, err, stderr)
	}
	warnRefused(res, stderr)
	written, failed, err := downloadArtifacts(ctx, q, res, dir, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "submit: %v\n", err)
		return exitFailed
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "submit: interrupted")
		return exitInterrupted
	}
	if c.json {
		printJSON(stdout, written)
	} else {
		for _, w := range written {
			fmt.Fprintln(stdout, w.Path)
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "submit: %d of %d artifacts refused\n", failed, len(res.Artifacts))
		return exitFailed
	}
	if len(res.Artifacts) == 0 {
		fmt.Fprintf(stderr, "submit: job %s left no artifacts\n", id)
	}
	return 0
}
