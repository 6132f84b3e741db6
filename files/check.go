package files

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
)

// ErrTooLarge means a tree's content is over its limit.
var ErrTooLarge = errors.New("over the size limit")

// Check reads a whole tar stream and refuses unsafe names and links, entries other than files,
// directories and links, and content over limit bytes (limit ≤ 0: no limit).
func Check(r io.Reader, limit int64) error {
	tr := tar.NewReader(r)
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := clean(hdr.Name)
		if hdr.Name == "./" || hdr.Name == "." {
			continue
		}
		if err := CheckName(name); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeDir:
		case tar.TypeSymlink:
			if err := CheckLink(name, hdr.Linkname); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %q is neither a file, a directory nor a link", ErrUnsafePath, name)
		}
		if hdr.Size < 0 || (limit > 0 && hdr.Size > limit-total) { // no overflow with a huge claimed size
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		total += hdr.Size
		if limit > 0 && total > limit {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
	}
}
