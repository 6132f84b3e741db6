package files

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// Entry is one file or link of a collected tree.
type Entry struct {
	Path   string
	Size   int64
	SHA256 string
	Mode   uint32 // permission bits
	Link   string // target, for a symbolic link
}

// Refusal names an entry that was left out and why.
type Refusal struct {
	Path   string
	Reason string
}

// Collect reads a tar stream to its end and hands each regular file's content to store,
// hashing and counting it on the way. Unsafe names, links pointing outside the tree and special
// files are left out and listed as refusals. Content over limit bytes in all (limit ≤ 0: no
// limit) ends the collection with ErrTooLarge.
func Collect(r io.Reader, limit int64, store func(path string, content io.Reader) error) ([]Entry, []Refusal, error) {
	tr := tar.NewReader(r)
	var (
		entries []Entry
		refused []Refusal
		total   int64
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries, refused, nil
		}
		if err != nil {
			return entries, refused, fmt.Errorf("read artifacts: %w", err)
		}
		if hdr.Name == "./" || hdr.Name == "." {
			continue
		}
		name := clean(hdr.Name)
		if err := CheckName(name); err != nil {
			refused = append(refused, Refusal{Path: hdr.Name, Reason: err.Error()})
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
		case tar.TypeSymlink:
			if err := CheckLink(name, hdr.Linkname); err != nil {
				refused = append(refused, Refusal{Path: name, Reason: err.Error()})
				continue
			}
			entries = append(entries, Entry{Path: name, Link: hdr.Linkname, Mode: uint32(hdr.Mode) & 0o777})
		case tar.TypeReg:
			if hdr.Size < 0 || (limit > 0 && hdr.Size > limit-total) { // no overflow with a huge claimed size
				return entries, refused, fmt.Errorf("%w: artifacts exceed %d bytes at %s", ErrTooLarge, limit, name)
			}
			total += hdr.Size
			h := sha256.New()
			counted := &CountingReader{R: io.TeeReader(tr, h)}
			if err := store(name, counted); err != nil {
				return entries, refused, fmt.Errorf("store artifact %s: %w", name, err)
			}
			if _, err := io.Copy(io.Discard, counted); err != nil { // whatever store left unread
				return entries, refused, fmt.Errorf("read artifact %s: %w", name, err)
			}
			entries = append(entries, Entry{Path: name, Size: counted.N, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: uint32(hdr.Mode) & 0o777})
		default:
			refused = append(refused, Refusal{Path: name, Reason: "neither a file, a directory nor a link"})
		}
	}
}

// CountingReader counts the bytes read through it.
type CountingReader struct {
	R io.Reader
	N int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}
