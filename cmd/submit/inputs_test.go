package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smallscale-ci/smallscale/files"
	"github.com/smallscale-ci/smallscale/queue"
)

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
	if err := os.Chmod(p, mode); err != nil { // whatever the umask
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

type tarEntry struct {
	typ  byte
	mode int64
	body string
	link string
}

// readTar reads a whole tar stream into a map by name.
func readTar(t *testing.T, r io.Reader) map[string]tarEntry {
	t.Helper()
	tr := tar.NewReader(r)
	got := map[string]tarEntry{}
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
		got[hdr.Name] = tarEntry{typ: hdr.Typeflag, mode: hdr.Mode & 0o7777, body: string(body), link: hdr.Linkname}
	}
}

func TestInputsArriveAsATarInTheObjectStore(t *testing.T) {
	tq := startQueue(t)
	w := tq.worker(t, "tiny")
	ctx := testCtx(t)
	dir := t.TempDir()
	mkfile(t, dir, "src/a.txt", 0o644, "hello\n")
	mkfile(t, dir, "src/sub/run.sh", 0o755, "#!/bin/sh\necho run\n")
	mkfile(t, dir, "src/sub/deeper/data.bin", 0o600, "\x00\x01\x02")
	symlink(t, "../a.txt", filepath.Join(dir, "src/sub/link"))
	symlink(t, "deeper/data.bin", filepath.Join(dir, "src/sub/near"))
	if err := os.Mkdir(filepath.Join(dir, "src/empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"src", "src/sub", "src/sub/deeper"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := mkfile(t, dir, "config.json", 0o640, `{"a": 1}`)

	code, stdout, stderr := tq.submit(t, "--runner", "tiny", "--script", write(t, "s.sh", "ls\n"),
		"--input", filepath.Join(dir, "src")+"/", "--input", config, "--detach")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	d := w.next(t)
	if d.Job.ID != id || d.Job.Inputs == nil || d.Job.Inputs.Object != queue.InputObject(id) {
		t.Fatalf("job = %+v, inputs %+v", d.Job, d.Job.Inputs)
	}
	r, err := tq.q.GetObject(ctx, d.Job.Inputs.Object)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != d.Job.Inputs.Size {
		t.Fatalf("object is %d bytes, the job says %d", len(raw), d.Job.Inputs.Size)
	}
	if err := files.Check(bytes.NewReader(raw), 0); err != nil {
		t.Fatalf("the inputs do not pass files.Check: %v", err)
	}
	want := map[string]tarEntry{
		"src/":                    {typ: tar.TypeDir, mode: 0o755},
		"src/a.txt":               {typ: tar.TypeReg, mode: 0o644, body: "hello\n"},
		"src/empty/":              {typ: tar.TypeDir, mode: 0o700},
		"src/sub/":                {typ: tar.TypeDir, mode: 0o755},
		"src/sub/deeper/":         {typ: tar.TypeDir, mode: 0o755},
		"src/sub/deeper/data.bin": {typ: tar.TypeReg, mode: 0o600, body: "\x00\x01\x02"},
		"src/sub/link":            {typ: tar.TypeSymlink, mode: 0o777, link: "../a.txt"},
		"src/sub/near":            {typ: tar.TypeSymlink, mode: 0o777, link: "deeper/data.bin"},
		"src/sub/run.sh":          {typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\necho run\n"},
		"config.json":             {typ: tar.TypeReg, mode: 0o640, body: `{"a": 1}`},
	}
	got := readTar(t, bytes.NewReader(raw))
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
}

// Inputs that are missing, unsafe or too big are refused before anything is uploaded or
// queued, with a message naming the path.
func TestUnsafeInputsAreRefused(t *testing.T) {
	tq := startQueue(t)
	tq.worker(t, "tiny")
	dir := t.TempDir()
	script := write(t, "s.sh", "true\n")

	symlink(t, "/", filepath.Join(dir, "root-link/x"))
	symlink(t, "../../etc", filepath.Join(dir, "up-link/y"))
	// Inside the tar (at its top, beside the other inputs) but outside its own input.
	symlink(t, "../../etc", filepath.Join(dir, "sideways/sub/z"))
	symlink(t, "ok.txt", filepath.Join(dir, "lonely-link"))
	mkfile(t, dir, "ok.txt", 0o644, "fine")
	if err := os.MkdirAll(filepath.Join(dir, "fifo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo/pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	mkfile(t, dir, "one/data", 0o644, "1")
	mkfile(t, dir, "two/data", 0o644, "2")
	mkfile(t, dir, "big/blob", 0o644, strings.Repeat("x", 4096))

	tests := []struct {
		name   string
		inputs []string
		extra  []string
		want   string
	}{
		{"missing", []string{filepath.Join(dir, "nosuch")}, nil, filepath.Join(dir, "nosuch") + ": no such file"},
		{"link to /", []string{filepath.Join(dir, "root-link")}, nil, `"root-link/x" points outside`},
		{"link to ../../etc", []string{filepath.Join(dir, "up-link")}, nil, `"up-link/y" points outside`},
		{"link out of its own input", []string{filepath.Join(dir, "sideways")}, nil, filepath.Join(dir, "sideways/sub/z") + ": link points outside"},
		{"an input that is a link", []string{filepath.Join(dir, "lonely-link")}, nil, "lonely-link is a symbolic link (to ok.txt)"},
		{"special file", []string{filepath.Join(dir, "fifo")}, nil, filepath.Join(dir, "fifo/pipe") + ": a named pipe"},
		{"same base name", []string{filepath.Join(dir, "one/data"), filepath.Join(dir, "two/data")}, nil, `would both arrive as "data"`},
		{"no name", []string{"."}, nil, `input "." has no name of its own`},
		{"the root", []string{"/"}, nil, `input "/" has no name of its own`},
		{"over --max-input", []string{filepath.Join(dir, "big")}, []string{"--max-input", "4K"}, "over --max-input 4K"},
		{"bad --max-input", []string{filepath.Join(dir, "ok.txt")}, []string{"--max-input", "12Q"}, "bad flags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--runner", "tiny", "--script", script}
			for _, in := range tt.inputs {
				args = append(args, "--input", in)
			}
			code, _, stderr := tq.submit(t, append(args, tt.extra...)...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d mentioning %q", code, stderr, exitUsage, tt.want)
			}
		})
	}
	if n := tq.pendingJobs(t); n != 0 {
		t.Fatalf("%d jobs queued, want none", n)
	}
	if objs := tq.objects(t); len(objs) != 0 {
		t.Fatalf("objects uploaded: %v", objs)
	}
	// The same checks run before NATS is even contacted.
	code, _, stderr := runSubmit("--nats", "nats://127.0.0.1:1", "--runner", "tiny", "--script", script, "--input", filepath.Join(dir, "root-link"))
	if code != exitUsage || !strings.Contains(stderr, "points outside") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// The limit holds while packing too, whatever the walk before it counted: the upload stops, its
// object is deleted.
func TestUploadStopsAtTheLimit(t *testing.T) {
	tq := startQueue(t)
	dir := t.TempDir()
	big := mkfile(t, dir, "big", 0o644, strings.Repeat("y", 64<<10))
	job, err := queue.NewJob("tiny", "true\n")
	if err != nil {
		t.Fatal(err)
	}
	_, err = uploadInputs(testCtx(t), tq.q, job.ID, []string{big}, 16<<10)
	if !errors.Is(err, errInput) || !errors.Is(err, files.ErrTooLarge) {
		t.Fatalf("upload over the limit: %v, want an input error wrapping ErrTooLarge", err)
	}
	if objs := tq.objects(t); len(objs) != 0 {
		t.Fatalf("objects left: %v", objs)
	}
}

// When Submit fails after the upload, the inputs are deleted again.
func TestFailedSubmitDeletesInputs(t *testing.T) {
	tq := startQueue(t)
	job, err := queue.NewJob("nosuch", "true\n")
	if err != nil {
		t.Fatal(err)
	}
	err = queueJob(testCtx(t), tq.q, &job, []string{write(t, "in.txt", "data")}, defaultMaxInput)
	if !errors.Is(err, queue.ErrNoSuchRunner) {
		t.Fatalf("queueJob: %v, want ErrNoSuchRunner", err)
	}
	if objs := tq.objects(t); len(objs) != 0 {
		t.Fatalf("objects left: %v", objs)
	}
	// The command itself checks the runner before uploading anything.
	code, _, stderr := tq.submit(t, "--runner", "nosuch", "--script", write(t, "s.sh", "true\n"), "--input", write(t, "x", "x"))
	if code != exitNoRunner || !strings.Contains(stderr, "no such runner") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// A big input streams: the heap never holds more than a small part of it.
func TestBigInputStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 200 MB")
	}
	tq := startQueue(t)
	tq.worker(t, "tiny")
	const size = 200 << 20
	f, err := os.Create(filepath.Join(t.TempDir(), "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	f.Close()

	// Collect garbage early, so that the heap in use follows what is live: a copy of the whole
	// input would show as 200 MiB, chunks passing through as a few.
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	runtime.GC()
	var (
		peak uint64
		mu   sync.Mutex
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				mu.Lock()
				peak = max(peak, ms.HeapInuse)
				mu.Unlock()
			}
		}
	}()
	code, stdout, stderr := tq.submit(t, "--runner", "tiny", "--script", write(t, "s.sh", "true\n"), "--input", f.Name(), "--detach")
	close(stop)
	<-done
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	r, err := tq.q.GetObject(testCtx(t), queue.InputObject(strings.TrimSpace(stdout)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err != nil || n < size {
		t.Fatalf("object: %d bytes, %v", n, err)
	}
	t.Logf("heap in use peaked at %d MiB while uploading %d MiB", peak>>20, size>>20)
	if peak > size*3/4 {
		t.Fatalf("heap in use peaked at %d MiB while uploading %d MiB", peak>>20, size>>20)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "512K": 512 << 10, "200M": 200 << 20, "1G": 1 << 30, "1GiB": 1 << 30,
		"3mb": 3 << 20, "2T": 2 << 40, "1073741824": 1 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5G", "G", "12Q", "1 G", "99999999999T"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
	if formatSize(1<<30) != "1G" || formatSize(1500) != "1500" {
		t.Errorf("formatSize: %s, %s", formatSize(1<<30), formatSize(1500))
	}
}
