package vmrun

import (
	"bytes"
	"io"
)

// copyUntilMarker copies r to w until marker appears in the stream, without writing the
// marker or anything after it. It reports whether it saw the marker; it returns false at EOF
// or on a read error (the domain went away). Output is passed on as soon as it is read, except
// for a tail shorter than the marker that might be its beginning.
func copyUntilMarker(w io.Writer, r io.Reader, marker []byte) (bool, error) {
	buf := make([]byte, 64<<10)
	var pending []byte
	keep := len(marker) - 1
	for {
		n, err := r.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			if i := bytes.Index(pending, marker); i >= 0 {
				if _, werr := w.Write(pending[:i]); werr != nil {
					return true, werr
				}
				return true, nil
			}
			if len(pending) > keep {
				cut := len(pending) - keep
				if _, werr := w.Write(pending[:cut]); werr != nil {
					return false, werr
				}
				pending = append(pending[:0], pending[cut:]...)
			}
		}
		if err != nil {
			if len(pending) > 0 {
				if _, werr := w.Write(pending); werr != nil {
					return false, werr
				}
			}
			if err == io.EOF {
				return false, nil
			}
			return false, err
		}
	}
}
