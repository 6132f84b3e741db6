package files_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/smallscale-ci/smallscale/files"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// mkfile writes a file under dir, creating its parents, with exactly mode.
func mkfile(t *testing.T, dir, name string, mode os.FileMode, body string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

type entry struct {
	typ  byte
	mode int64
	body string
	link string
}

func readTar(t *testing.T, data []byte) map[string]entry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	got := map[string]entry{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s carries the packer's owner: %d/%d %q/%q", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		got[hdr.Name] = entry{typ: hdr.Typeflag, mode: hdr.Mode & 0o7777, body: string(body), link: hdr.Linkname}
	}
}

// hdr is one entry of a crafted tar.
type hdr struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

// craft builds a tar as a hostile guest or submitter might, entry by entry.
func craft(t *testing.T, entries ...hdr) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: mode, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("write header %q: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A tree packed with Pack passes Check and comes back whole through Collect: names, contents,
// modes, links.
func TestPackCheckCollectRoundTrip(t *testing.T) {
	dir := t.TempDir()
	mkfile(t, dir, "src/a.txt", 0o644, "hello\n")
	mkfile(t, dir, "src/sub/run.sh", 0o755, "#!/bin/sh\n")
	mkfile(t, dir, "src/sub/deep/er/data", 0o600, "\x00\xff")
	mkfile(t, dir, "src/sub/empty-file", 0o644, "")
	symlink(t, "../a.txt", filepath.Join(dir, "src/sub/up"))
	symlink(t, "deep/er", filepath.Join(dir, "src/sub/down"))
	if err := os.Mkdir(filepath.Join(dir, "src/empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"src", "src/sub", "src/sub/deep", "src/sub/deep/er"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	single := mkfile(t, dir, "single.cfg", 0o640, "k=v")

	var buf bytes.Buffer
	n, err := files.Pack(&buf, []string{filepath.Join(dir, "src"), single})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len("hello\n#!/bin/sh\n\x00\xffk=v")); n != want {
		t.Errorf("Pack packed %d bytes of content, want %d", n, want)
	}
	if err := files.Check(bytes.NewReader(buf.Bytes()), 0); err != nil {
		t.Fatalf("Check refuses what Pack wrote: %v", err)
	}
	if err := files.Check(bytes.NewReader(buf.Bytes()), n); err != nil {
		t.Fatalf("Check at a limit of exactly the content: %v", err)
	}
	if err := files.Check(bytes.NewReader(buf.Bytes()), n-1); !errors.Is(err, files.ErrTooLarge) {
		t.Fatalf("Check one byte under: %v, want ErrTooLarge", err)
	}
	want := map[string]entry{
		"src/":                 {typ: tar.TypeDir, mode: 0o755},
		"src/a.txt":            {typ: tar.TypeReg, mode: 0o644, body: "hello\n"},
		"src/empty/":           {typ: tar.TypeDir, mode: 0o700},
		"src/sub/":             {typ: tar.TypeDir, mode: 0o755},
		"src/sub/run.sh":       {typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\n"},
		"src/sub/deep/":        {typ: tar.TypeDir, mode: 0o755},
		"src/sub/deep/er/":     {typ: tar.TypeDir, mode: 0o755},
		"src/sub/deep/er/data": {typ: tar.TypeReg, mode: 0o600, body: "\x00\xff"},
		"src/sub/empty-file":   {typ: tar.TypeReg, mode: 0o644},
		"src/sub/up":           {typ: tar.TypeSymlink, mode: 0o777, link: "../a.txt"},
		"src/sub/down":         {typ: tar.TypeSymlink, mode: 0o777, link: "deep/er"},
		"single.cfg":           {typ: tar.TypeReg, mode: 0o640, body: "k=v"},
	}
	got := readTar(t, buf.Bytes())
	for name, e := range want {
		if got[name] != e {
			t.Errorf("%s: got %+v, want %+v", name, got[name], e)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected entry %s", name)
		}
	}

	stored := map[string]string{}
	entries, refused, err := files.Collect(bytes.NewReader(buf.Bytes()), 0, func(path string, r io.Reader) error {
		b, err := io.ReadAll(r)
		stored[path] = string(b)
		return err
	})
	if err != nil || len(refused) != 0 {
		t.Fatalf("Collect: %v, refused %+v", err, refused)
	}
	byPath := map[string]files.Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	for name, w := range want {
		name = strings.TrimSuffix(name, "/")
		e, ok := byPath[name]
		switch w.typ {
		case tar.TypeDir:
			if ok {
				t.Errorf("Collect lists directory %s", name)
			}
		case tar.TypeSymlink:
			if !ok || e.Link != w.link || e.Size != 0 || e.SHA256 != "" {
				t.Errorf("Collect: %s = %+v, want a link to %s", name, e, w.link)
			}
		case tar.TypeReg:
			if !ok || e.Size != int64(len(w.body)) || e.SHA256 != sha(w.body) || int64(e.Mode) != w.mode || stored[name] != w.body {
				t.Errorf("Collect: %s = %+v, stored %q; want %+v", name, e, stored[name], w)
			}
		}
	}
}

func TestPackRefuses(t *testing.T) {
	dir := t.TempDir()
	symlink(t, "/", filepath.Join(dir, "root/x"))
	symlink(t, "../../etc", filepath.Join(dir, "up/y"))
	symlink(t, filepath.Join(dir, "up"), filepath.Join(dir, "abs/z")) // absolute, even to a sibling
	if err := os.MkdirAll(filepath.Join(dir, "fifo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo/p"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := mkfile(t, dir, "one/same", 0o644, "1")
	b := mkfile(t, dir, "two/same", 0o644, "2")
	tests := []struct {
		name  string
		paths []string
		want  string
	}{
		{"link to /", []string{filepath.Join(dir, "root")}, "points outside"},
		{"link to ../../etc", []string{filepath.Join(dir, "up")}, "points outside"},
		{"absolute link", []string{filepath.Join(dir, "abs")}, "points outside"},
		{"named pipe", []string{filepath.Join(dir, "fifo")}, "not a regular file"},
		{"same base name", []string{a, b}, `both arrive as "same"`},
		{"missing", []string{filepath.Join(dir, "nosuch")}, "no such file"},
		{"dot", []string{"."}, "name a file or directory"},
		{"root", []string{"/"}, "name a file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := files.Pack(io.Discard, tt.paths)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Pack(%v) = %v, want an error mentioning %q", tt.paths, err, tt.want)
			}
		})
	}
}

func TestCheckRefusesHostileTars(t *testing.T) {
	good := hdr{name: "ok.txt", typ: tar.TypeReg, body: "fine"}
	tests := []struct {
		name  string
		entry hdr
		want  error
	}{
		{"dot-dot", hdr{name: "../x", typ: tar.TypeReg, body: "x"}, files.ErrUnsafePath},
		{"dot-dot inside", hdr{name: "a/../../x", typ: tar.TypeReg}, files.ErrUnsafePath},
		{"dot-slash dot-dot", hdr{name: "./../x", typ: tar.TypeReg}, files.ErrUnsafePath},
		{"absolute", hdr{name: "/etc/cron.d/x", typ: tar.TypeReg, body: "x"}, files.ErrUnsafePath},
		{"backslash", hdr{name: `..\x`, typ: tar.TypeReg}, files.ErrUnsafePath},
		{"absolute directory", hdr{name: "/tmp/", typ: tar.TypeDir}, files.ErrUnsafePath},
		{"link to /", hdr{name: "l", typ: tar.TypeSymlink, link: "/"}, files.ErrUnsafePath},
		{"link up", hdr{name: "d/l", typ: tar.TypeSymlink, link: "../.."}, files.ErrUnsafePath},
		{"link via inner dot-dot", hdr{name: "l", typ: tar.TypeSymlink, link: "a/../../etc"}, files.ErrUnsafePath},
		{"empty link", hdr{name: "l", typ: tar.TypeSymlink}, files.ErrUnsafePath},
		{"hard link", hdr{name: "h", typ: tar.TypeLink, link: "ok.txt"}, files.ErrUnsafePath},
		{"hard link out", hdr{name: "h", typ: tar.TypeLink, link: "/etc/shadow"}, files.ErrUnsafePath},
		{"character device", hdr{name: "tty", typ: tar.TypeChar}, files.ErrUnsafePath},
		{"block device", hdr{name: "sda", typ: tar.TypeBlock}, files.ErrUnsafePath},
		{"fifo", hdr{name: "p", typ: tar.TypeFifo}, files.ErrUnsafePath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := craft(t, good, tt.entry)
			if err := files.Check(bytes.NewReader(data), 0); !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("over the limit", func(t *testing.T) {
		data := craft(t, good, hdr{name: "big", typ: tar.TypeReg, body: strings.Repeat("x", 100)})
		if err := files.Check(bytes.NewReader(data), 103); !errors.Is(err, files.ErrTooLarge) {
			t.Fatalf("Check = %v, want ErrTooLarge", err)
		}
		if err := files.Check(bytes.NewReader(data), 104); err != nil {
			t.Fatalf("Check at exactly the limit = %v", err)
		}
	})
	t.Run("not a tar", func(t *testing.T) {
		if err := files.Check(strings.NewReader(strings.Repeat("garbage!", 100)), 0); err == nil {
			t.Fatal("Check accepted garbage")
		}
	})
	t.Run("what tar -C dir . writes", func(t *testing.T) {
		data := craft(t, hdr{name: "./", typ: tar.TypeDir, mode: 0o755}, hdr{name: "./a", typ: tar.TypeReg, body: "a"},
			hdr{name: "./d/", typ: tar.TypeDir, mode: 0o755}, hdr{name: "./d/l", typ: tar.TypeSymlink, link: "../a"})
		if err := files.Check(bytes.NewReader(data), 0); err != nil {
			t.Fatalf("Check = %v", err)
		}
	})
}

// Collect keeps what is safe and lists the rest, so that a job's output directory with one bad
// entry still yields its other artifacts.
func TestCollectListsRefusalsAndKeepsTheRest(t *testing.T) {
	data := craft(t,
		hdr{name: "./", typ: tar.TypeDir, mode: 0o755},
		hdr{name: "./report.txt", typ: tar.TypeReg, body: "all good\n"},
		hdr{name: "../escape", typ: tar.TypeReg, body: "evil"},
		hdr{name: "/etc/cron.d/evil", typ: tar.TypeReg, body: "evil"},
		hdr{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
		hdr{name: "./bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		hdr{name: "./root", typ: tar.TypeSymlink, link: "/"},
		hdr{name: "./bin/up", typ: tar.TypeSymlink, link: "../.."},
		hdr{name: "./latest", typ: tar.TypeSymlink, link: "bin/tool"},
		hdr{name: "./hard", typ: tar.TypeLink, link: "report.txt"},
		hdr{name: "./tty", typ: tar.TypeChar},
		hdr{name: "./pipe", typ: tar.TypeFifo},
		hdr{name: "./empty", typ: tar.TypeReg, mode: 0o600},
	)
	stored := map[string]string{}
	store := func(path string, r io.Reader) error {
		// Read only part: Collect must still hash and count all of it.
		b := make([]byte, 3)
		n, _ := io.ReadFull(r, b)
		stored[path] = string(b[:n])
		return nil
	}
	entries, refused, err := files.Collect(bytes.NewReader(data), 0, store)
	if err != nil {
		t.Fatal(err)
	}
	wantEntries := []files.Entry{
		{Path: "report.txt", Size: 9, SHA256: sha("all good\n"), Mode: 0o644},
		{Path: "bin/tool", Size: 10, SHA256: sha("#!/bin/sh\n"), Mode: 0o755},
		{Path: "latest", Link: "bin/tool", Mode: 0o644},
		{Path: "empty", SHA256: sha(""), Mode: 0o600},
	}
	if !slices.Equal(entries, wantEntries) {
		t.Errorf("entries:\n got %+v\nwant %+v", entries, wantEntries)
	}
	var refusedPaths []string
	for _, r := range refused {
		refusedPaths = append(refusedPaths, r.Path)
		if r.Reason == "" {
			t.Errorf("refusal of %s gives no reason", r.Path)
		}
	}
	if want := []string{"../escape", "/etc/cron.d/evil", "root", "bin/up", "hard", "tty", "pipe"}; !slices.Equal(refusedPaths, want) {
		t.Errorf("refused %v, want %v", refusedPaths, want)
	}
	if want := map[string]string{"report.txt": "all", "bin/tool": "#!/", "empty": ""}; !maps.Equal(stored, want) {
		t.Errorf("stored %v, want %v", stored, want)
	}

	t.Run("limit", func(t *testing.T) {
		calls := 0
		count := func(string, io.Reader) error { calls++; return nil }
		// report.txt (9) and bin/tool (10) are 19 bytes.
		if _, _, err := files.Collect(bytes.NewReader(data), 19, count); err != nil {
			t.Fatalf("Collect at exactly the limit: %v", err)
		}
		calls = 0
		entries, _, err := files.Collect(bytes.NewReader(data), 18, count)
		if !errors.Is(err, files.ErrTooLarge) || !strings.Contains(err.Error(), "bin/tool") {
			t.Fatalf("Collect over the limit: %v, want ErrTooLarge naming bin/tool", err)
		}
		if calls != 1 || len(entries) != 1 {
			t.Fatalf("over the limit: store called %d times, %d entries; want the one before it", calls, len(entries))
		}
	})
	t.Run("store fails", func(t *testing.T) {
		boom := errors.New("bucket full")
		if _, _, err := files.Collect(bytes.NewReader(data), 0, func(string, io.Reader) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Collect = %v, want the store's error", err)
		}
	})
}

func TestWriteFileAndLinkStayInside(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "out")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{dir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	symlink(t, outside, filepath.Join(dir, "esc"))
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	if n, err := files.WriteFile(root, "a/b/c.txt", 0o750, strings.NewReader("data"), sha("data")); err != nil || n != 4 {
		t.Fatalf("WriteFile: %d, %v", n, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "a/b/c.txt")); err != nil || st.Mode() != 0o750 {
		t.Fatalf("a/b/c.txt: %v, %v", st.Mode(), err)
	}
	if _, err := files.WriteFile(root, "bad-sum", 0o644, strings.NewReader("data"), sha("other")); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("WriteFile with a wrong checksum: %v", err)
	}
	if err := files.WriteLink(root, "a/link", "b/c.txt"); err != nil {
		t.Fatal(err)
	}
	if err := files.WriteLink(root, "a/link", "b"); err != nil { // replaces it
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "a/link")); l != "b" {
		t.Fatalf("a/link -> %q", l)
	}
	for _, name := range []string{"../x", "/x", filepath.Join(outside, "y"), "esc/z", "esc"} {
		if _, err := files.WriteFile(root, name, 0o644, strings.NewReader("evil"), ""); err == nil {
			t.Errorf("WriteFile(%q) wrote", name)
		}
	}
	for _, l := range [][2]string{{"l", "/"}, {"l", ".."}, {"d/l", "../../x"}, {"../l", "x"}} {
		if err := files.WriteLink(root, l[0], l[1]); !errors.Is(err, files.ErrUnsafePath) {
			t.Errorf("WriteLink(%q, %q) = %v, want ErrUnsafePath", l[0], l[1], err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside: %v", entries)
	}
	for _, p := range []string{filepath.Join(base, "x"), filepath.Join(base, "l")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}
