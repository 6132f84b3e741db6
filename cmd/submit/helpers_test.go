package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/internal/natsserver"
	"github.com/smallscale-ci/smallscale/queue"
)

// testQueue is a real JetStream server, set up as a worker would, and a client on it.
type testQueue struct {
	q   *queue.Queue
	js  jetstream.JetStream
	url string
}

func startQueue(t *testing.T) *testQueue {
	t.Helper()
	s, err := natsserver.Start("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Setup(testCtx(t), js, queue.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	return &testQueue{q: q, js: js, url: s.ClientURL()}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// submit runs the submit command against this server.
func (tq *testQueue) submit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(testCtx(t), tq.args(args), &out, &errb)
	return code, out.String(), errb.String()
}

// args puts --nats URL where the command takes it: after the subcommand's name, if any.
func (tq *testQueue) args(args []string) []string {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return append([]string{args[0], "--nats", tq.url}, args[1:]...)
	}
	return append([]string{"--nats", tq.url}, args...)
}

type outcome struct {
	code           int
	stdout, stderr string
}

// submitAsync runs submit in the background, its stdout going to out.
func (tq *testQueue) submitAsync(t *testing.T, out *syncBuffer, args ...string) <-chan outcome {
	t.Helper()
	done := make(chan outcome, 1)
	a := tq.args(args)
	ctx := testCtx(t)
	go func() {
		var errb syncBuffer
		code := run(ctx, a, out, &errb)
		done <- outcome{code: code, stdout: out.String(), stderr: errb.String()}
	}()
	return done
}

func wait(t *testing.T, done <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(30 * time.Second):
		t.Fatal("submit did not return within 30s")
		return outcome{}
	}
}

// worker plays a smallscale worker through the queue API: no VM, the test decides what the job
// printed and left behind.
type worker struct {
	tq *testQueue
	p  *queue.Puller
}

func (tq *testQueue) worker(t *testing.T, runner string) *worker {
	t.Helper()
	p, err := tq.q.Puller(testCtx(t), runner, queue.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &worker{tq: tq, p: p}
}

// next pulls the next job, failing the test if none comes within 10 seconds.
func (w *worker) next(t *testing.T) *queue.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := w.p.Next(ctx)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	return d
}

// take pulls the next job and starts it as worker "w1".
func (w *worker) take(t *testing.T) *queue.Delivery {
	t.Helper()
	d := w.next(t)
	if err := d.Start(testCtx(t), "w1"); err != nil {
		t.Fatalf("start %s: %v", d.Job.ID, err)
	}
	return d
}

// finish ends the job with the script's exit code and what its log writer published.
func finish(t *testing.T, d *queue.Delivery, logs *queue.LogWriter, code int, res queue.Result) {
	t.Helper()
	if res.State == "" {
		res.State = queue.StateSucceeded
		if code != 0 {
			res.State = queue.StateFailed
		}
		res.ExitCode = &code
	}
	if logs != nil {
		res.LogChunks, res.LogBytes = logs.Chunks(), logs.Bytes()
	}
	if err := d.Finish(testCtx(t), res); err != nil {
		t.Fatal(err)
	}
}

func writeLog(t *testing.T, logs *queue.LogWriter, chunks ...[]byte) {
	t.Helper()
	for _, c := range chunks {
		if _, err := logs.Write(c); err != nil {
			t.Fatal(err)
		}
	}
}

// putArtifact stores content as the job's artifact at path, as a worker collecting it would.
func (tq *testQueue) putArtifact(t *testing.T, jobID, path string, mode uint32, content []byte) queue.Artifact {
	t.Helper()
	obj := queue.ArtifactObject(jobID, path)
	n, err := tq.q.PutObject(testCtx(t), obj, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	return queue.Artifact{Path: path, Size: n, SHA256: sha(content), Mode: mode, Object: obj}
}

func (tq *testQueue) pendingJobs(t *testing.T) uint64 {
	t.Helper()
	s, err := tq.js.Stream(testCtx(t), tq.q.Names().JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// objects lists the names in the artifacts bucket.
func (tq *testQueue) objects(t *testing.T) []string {
	t.Helper()
	obs, err := tq.js.ObjectStore(testCtx(t), tq.q.Names().ArtifactsBucket())
	if err != nil {
		t.Fatal(err)
	}
	infos, err := obs.List(testCtx(t))
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range infos {
		names = append(names, i.Name)
	}
	return names
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value in %q", s)
	}
	return v
}

// syncBuffer is a buffer that a running submit writes and the test reads, and that tells
// whoever waits when something arrived.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{}, 1)
	}
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor returns once the buffer holds want, failing the test after 10 seconds.
func (b *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	b.mu.Lock()
	if b.changed == nil {
		b.changed = make(chan struct{}, 1)
	}
	changed := b.changed
	b.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("waited 10s for %q, have %q", want, b.String())
		}
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
