package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/smallscale-ci/smallscale/files"
	"github.com/smallscale-ci/smallscale/queue"
)

// errInput marks a problem with the --input paths themselves: nothing was queued, exit 64.
var errInput = errors.New("input")

type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() []error {
	return []error{e.err, errInput}
}

// checkInputs walks the --input paths without reading any content and refuses what files.Pack
// would refuse, and more: a link must stay inside the tree of its own input, not merely inside
// the tar. It returns the packed size as far as it can tell (headers and padding, not PAX
// records), so that inputs over the limit are refused before any upload; uploadInputs enforces
// the limit exactly.
func checkInputs(paths []string, limit int64) (int64, error) {
	size := int64(1024) // the tar's end
	seen := map[string]string{}
	for _, p := range paths {
		base := filepath.Base(filepath.Clean(p))
		if base == "/" || base == "." || base == ".." {
			return 0, fmt.Errorf("input %q has no name of its own to arrive under: name the directory by its name (e.g. ../src) or list what is in it", p)
		}
		if prev, dup := seen[base]; dup {
			return 0, fmt.Errorf("inputs %q and %q would both arrive as %q", prev, p, base)
		}
		seen[base] = p
		root := filepath.Dir(filepath.Clean(p))
		// Walk p as given, as Pack does: "dir/" follows a link named dir, "dir" does not.
		err := filepath.WalkDir(p, func(file string, d fs.DirEntry, err error) error {
			if err != nil {
				return pathError(err)
			}
			rel, err := filepath.Rel(root, file)
			if err != nil {
				return fmt.Errorf("input %s: %w", file, err)
			}
			name := filepath.ToSlash(rel)
			if err := files.CheckName(name); err != nil {
				return fmt.Errorf("input %s: %w", file, err)
			}
			info, err := d.Info()
			if err != nil {
				return pathError(err)
			}
			size += 512
			switch {
			case info.Mode().IsRegular():
				f, err := os.Open(file) // unreadable files are refused now, not halfway through the upload
				if err != nil {
					return pathError(err)
				}
				f.Close()
				size += (info.Size() + 511) &^ 511
			case info.IsDir():
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(file)
				if err != nil {
					return pathError(err)
				}
				if name == base {
					return fmt.Errorf("input %s is a symbolic link (to %s): name its target instead", file, target)
				}
				if err := files.CheckLink(name, filepath.ToSlash(target)); err != nil {
					return fmt.Errorf("input %s: %w", file, err)
				}
				if r := path.Join(path.Dir(name), filepath.ToSlash(target)); r != base && !strings.HasPrefix(r, base+"/") {
					return fmt.Errorf("input %s: link points outside %s (to %s)", file, p, target)
				}
			default:
				return fmt.Errorf("input %s: a %s is not a regular file, directory or link", file, fileKind(info.Mode()))
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if size > limit {
		return size, fmt.Errorf("inputs are %s packed, over --max-input %s", humanSize(size), formatSize(limit))
	}
	return size, nil
}

// pathError says "input src/x: no such file or directory" rather than "lstat src/x: …".
func pathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("input %s: %w", pe.Path, pe.Err)
	}
	return fmt.Errorf("input: %w", err)
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + m.Type().String() + ")"
}

// errUploadStopped ends packing when the upload it feeds has failed.
var errUploadStopped = errors.New("upload stopped")

// uploadInputs packs the paths straight into the job's input object through a pipe, so that
// only a chunk of them is ever in memory, and stops at limit bytes of tar. On any error the
// object is deleted. Errors with the inputs themselves (a file gone, over the limit) wrap
// errInput.
func uploadInputs(ctx context.Context, q *queue.Queue, jobID string, paths []string, limit int64) (int64, error) {
	name := queue.InputObject(jobID)
	pr, pw := io.Pipe()
	packed := make(chan error, 1)
	go func() {
		_, err := files.Pack(&limitWriter{w: pw, limit: limit}, paths)
		pw.CloseWithError(err) // nil: the upload reads EOF
		packed <- err
	}()
	size, err := q.PutObject(ctx, name, pr)
	pr.CloseWithError(errUploadStopped) // unblocks Pack when the upload ended early
	packErr := <-packed
	if packErr != nil && !errors.Is(packErr, errUploadStopped) {
		err = inputError{packErr}
	}
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := q.DeleteObject(dctx, name); derr != nil {
			err = errors.Join(err, derr)
		}
		return 0, err
	}
	return size, nil
}

// limitWriter fails once more than limit bytes were written through it.
type limitWriter struct {
	w        io.Writer
	n, limit int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n+int64(len(p)) > l.limit {
		return 0, fmt.Errorf("%w: inputs are over --max-input %s once packed", files.ErrTooLarge, formatSize(l.limit))
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}
