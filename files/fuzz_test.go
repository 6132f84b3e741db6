package files_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/smallscale-ci/smallscale/files"
)

// fuzzStoreBudget bounds what the fuzz store reads in one run. A small tar can claim far more
// (a PAX sparse file of 1 TiB is a few hundred bytes of tar), and with no limit Collect would
// read all of it.
const fuzzStoreBudget = 1 << 20

var errFuzzBudget = errors.New("fuzz store budget spent")

// fuzzTarEntry is one entry of a tar built for a seed.
type fuzzTarEntry struct {
	name, link, body string
	typ              byte
	size             int64             // header size; -1: len(body)
	pax              map[string]string // extra PAX records
}

// fuzzTar writes entries as a tar. An entry whose header size differs from its body is written
// as is (the writer is bypassed for the body) and ends the archive there, unterminated.
func fuzzTar(entries ...fuzzTarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		size := e.size
		if size < 0 {
			size = int64(len(e.body))
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: size, PAXRecords: e.pax}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(fmt.Sprintf("seed entry %q: %v", e.name, err))
		}
		if h.Size != int64(len(e.body)) {
			buf.WriteString(e.body) // WriteHeader has written the header to buf
			return buf.Bytes()
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// paxSparseTar is a PAX 0.1 GNU sparse file (which archive/tar reads but does not write): its
// records say realsize bytes, of which the archive holds only the data bytes at offset 0.
func paxSparseTar(name string, realsize int64, data string) []byte {
	records := map[string]string{
		"GNU.sparse.size":      strconv.FormatInt(realsize, 10),
		"GNU.sparse.numblocks": "1",
		"GNU.sparse.map":       "0," + strconv.Itoa(len(data)),
		"path":                 name,
	}
	var pax strings.Builder
	for _, k := range []string{"path", "GNU.sparse.size", "GNU.sparse.numblocks", "GNU.sparse.map"} {
		rec := " " + k + "=" + records[k] + "\n"
		n := len(rec) + 1
		for len(strconv.Itoa(n))+len(rec) != n {
			n++
		}
		pax.WriteString(strconv.Itoa(n) + rec)
	}
	// The extended header is written as a regular file, then retyped to 'x'.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name, body string
	}{{"PaxHeaders/" + name, pax.String()}, {name, data}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body)), Format: tar.FormatUSTAR}); err != nil {
			panic(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	out := buf.Bytes()
	out[156] = tar.TypeXHeader
	fixTarChecksums(out)
	return out
}

// fixTarChecksums rewrites the checksum of every 512-byte block that carries a ustar magic,
// so that mutations of header fields reach the code after the tar reader's checksum test.
func fixTarChecksums(b []byte) {
	for off := 0; off+512 <= len(b); off += 512 {
		blk := b[off : off+512]
		if string(blk[257:262]) != "ustar" {
			continue
		}
		sum := 0
		for i, c := range blk {
			if i >= 148 && i < 156 {
				c = ' '
			}
			sum += int(c)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
}

// FuzzCollect feeds arbitrary bytes to Collect as a guest's artifact tar, with a store that reads
// everything it is handed.
//
// Properties: Collect never panics; every entry's path passes CheckName and every link
// CheckLink; entries are the stored files, in order, with the size and SHA-256 of what the store
// read; with a limit, neither the entries nor the bytes handed to the store add up to more than
// it. fixChecksums makes the tar reader accept mutated headers.
func FuzzCollect(f *testing.F) {
	reg := func(name, body string) fuzzTarEntry {
		return fuzzTarEntry{name: name, body: body, typ: tar.TypeReg, size: -1}
	}
	dir := func(name string) fuzzTarEntry { return fuzzTarEntry{name: name, typ: tar.TypeDir, size: -1} }
	link := func(name, target string) fuzzTarEntry {
		return fuzzTarEntry{name: name, link: target, typ: tar.TypeSymlink, size: -1}
	}
	tree := fuzzTar(dir("./"), dir("./out/"), reg("./out/a.txt", "hello\n"), reg("./out/sub/b.bin", "\x00\x01\x02"),
		link("./out/latest", "a.txt"), link("./out/sub/up", "../a.txt"), reg("./empty", ""))
	f.Add(tree, int64(0), false)
	f.Add(tree, int64(9), false) // exactly the content
	f.Add(tree, int64(8), false) // one byte short
	f.Add(fuzzTar(reg("../x", "escape"), reg("/etc/x", "abs"), reg("a/../../x", "mid"), reg(`a\b`, "bs"),
		link("l1", "/"), link("l2", "../../etc/passwd"), link("d/l3", "../.."), link("l4", ""),
		reg("ok", "kept")), int64(1<<20), false)
	f.Add(fuzzTar(fuzzTarEntry{name: "hard", link: "ok", typ: tar.TypeLink, size: -1},
		fuzzTarEntry{name: "dev", typ: tar.TypeChar, size: -1}, fuzzTarEntry{name: "fifo", typ: tar.TypeFifo, size: -1},
		reg("ok", "kept")), int64(100), false)
	f.Add(fuzzTar(reg("big", strings.Repeat("x", 3000))), int64(1000), false)
	f.Add(fuzzTar(reg(strings.Repeat("long/", 30)+"file", "in a PAX path record"),
		reg(strings.Repeat("a/", 60)+strings.Repeat("../", 61)+"x", "escapes through a PAX path record"),
		link(strings.Repeat("l/", 60)+"link", strings.Repeat("../", 70)),
		fuzzTarEntry{name: "xattr", body: "p", typ: tar.TypeReg, size: -1, pax: map[string]string{"SCHILY.xattr.user.x": "y"}}),
		int64(0), true)
	f.Add(fuzzTar(fuzzTarEntry{name: "truncated", body: "only this", typ: tar.TypeReg, size: 4096}), int64(0), true)
	f.Add(paxSparseTar("sparse", 4096, "data"), int64(0), true)
	f.Add(paxSparseTar("sparse-huge", 1<<40, "data"), int64(1<<20), true)
	f.Add([]byte("not a tar at all"), int64(10), false)
	f.Add(make([]byte, 1024), int64(0), false) // end-of-archive blocks only

	f.Fuzz(func(t *testing.T, data []byte, limit int64, fixChecksums bool) {
		if fixChecksums {
			data = bytes.Clone(data)
			fixTarChecksums(data)
		}
		type stored struct {
			path, sha string
			size      int64
		}
		var (
			kept  []stored
			total int64 // bytes handed to the store, over all calls
		)
		store := func(path string, content io.Reader) error {
			h := sha256.New()
			n, err := io.Copy(h, io.LimitReader(content, fuzzStoreBudget-total+1))
			total += n
			if limit > 0 && total > limit {
				t.Fatalf("the store was handed %d bytes (at %s), over the limit of %d", total, path, limit)
			}
			if total > fuzzStoreBudget {
				return errFuzzBudget
			}
			if err != nil {
				return err
			}
			kept = append(kept, stored{path, hex.EncodeToString(h.Sum(nil)), n})
			return nil
		}
		entries, refused, err := files.Collect(bytes.NewReader(data), limit, store)
		if err != nil && limit <= 0 && errors.Is(err, files.ErrTooLarge) {
			t.Fatalf("ErrTooLarge without a limit: %v", err)
		}

		var sum int64
		nFiles := 0
		for _, e := range entries {
			if cerr := files.CheckName(e.Path); cerr != nil {
				t.Errorf("entry %+v: %v", e, cerr)
			}
			if e.Mode&^0o777 != 0 {
				t.Errorf("entry %s has mode %o beyond the permission bits", e.Path, e.Mode)
			}
			if e.Link != "" {
				if lerr := files.CheckLink(e.Path, e.Link); lerr != nil {
					t.Errorf("link entry %+v: %v", e, lerr)
				}
				if e.Size != 0 || e.SHA256 != "" {
					t.Errorf("link entry %+v has content", e)
				}
				continue
			}
			if nFiles >= len(kept) {
				t.Fatalf("entry %+v was never handed to the store (%d stored)", e, len(kept))
			}
			if s := kept[nFiles]; s.path != e.Path || s.size != e.Size || s.sha != e.SHA256 {
				t.Errorf("entry %s: size %d sha256 %s; the store read %s: %d bytes, sha256 %s",
					e.Path, e.Size, e.SHA256, s.path, s.size, s.sha)
			}
			nFiles++
			if e.Size < 0 || sum+e.Size < sum {
				t.Fatalf("entry %s has size %d (sum so far %d)", e.Path, e.Size, sum)
			}
			sum += e.Size
		}
		if nFiles != len(kept) {
			t.Errorf("%d files stored, %d listed", len(kept), nFiles)
		}
		if limit > 0 && sum > limit {
			t.Errorf("entries add up to %d bytes, over the limit of %d", sum, limit)
		}
		for _, r := range refused {
			if r.Reason == "" {
				t.Errorf("refusal of %q gives no reason", r.Path)
			}
		}
	})
}
