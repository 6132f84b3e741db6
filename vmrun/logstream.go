package vmrun

import (
	"bytes"
	"io"
)

// copyUntilMarker copies r to w until marker appears in the stream, without writing the
// marker or anything after it. It reports whether it saw the marker; it returns false at EOF
// or on a read error (the domain went away). Output is passed on as soon as it is read, except
// for a tail that could be the beginning of the marker.
func copyUntilMarker(w io.Writer, r io.Reader, marker []byte) (bool, error) {
	buf := make([]byte, 64<<10)
	var pending []byte
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
			if cut := len(pending) - markerPrefixAtEnd(pending, marker); cut > 0 {
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

// markerPrefixAtEnd is the length of the longest proper prefix of marker that b ends with.
func markerPrefixAtEnd(b, marker []byte) int {
	for k := min(len(marker)-1, len(b)); k > 0; k-- {
		if bytes.HasSuffix(b, marker[:k]) {
			return k
		}
	}
	return 0
}
