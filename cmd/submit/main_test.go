package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/internal/natsserver"
	"github.com/smallscale-ci/smallscale/queue"
)

func runSubmit(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Bad input is refused before anything is queued: no NATS is even contacted (the URL points
// nowhere), and the exit status is 64 with a message that names the problem.
func TestBadInputIsRefused(t *testing.T) {
	good := write(t, "ok.sh", "echo hi\n")
	unreadable := filepath.Join(t.TempDir(), "missing.sh")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no runner", []string{"--script", good}, "--runner is required"},
		{"no script", []string{"--runner", "tiny"}, "--script is required"},
		{"missing script", []string{"--runner", "tiny", "--script", unreadable}, "no such file"},
		{"directory as script", []string{"--runner", "tiny", "--script", t.TempDir()}, "is a directory"},
		{"empty script", []string{"--runner", "tiny", "--script", write(t, "e.sh", "")}, "is empty"},
		{"script too big", []string{"--runner", "tiny", "--script", write(t, "big.sh", strings.Repeat("#", queue.MaxScriptBytes+1))}, "over the limit"},
		{"bad runner name", []string{"--runner", "Ubuntu/20.04", "--script", good}, "runner name"},
		{"env without =", []string{"--runner", "tiny", "--script", good, "--env", "FOO"}, "NAME=VALUE"},
		{"env bad name", []string{"--runner", "tiny", "--script", good, "--env", "1X=2"}, "env name"},
		{"env reserved", []string{"--runner", "tiny", "--script", good, "--env", "CI_JOB_ID=x"}, "reserved"},
		{"env twice", []string{"--runner", "tiny", "--script", good, "--env", "A=1", "--env", "A=2"}, "given twice"},
		{"negative timeout", []string{"--runner", "tiny", "--script", good, "--timeout", "-1s"}, "--timeout"},
		{"stray argument", []string{"--runner", "tiny", "--script", good, "extra"}, "unexpected argument"},
		{"artifacts dir is a file", []string{"--runner", "tiny", "--script", good, "--artifacts", good}, "not a directory"},
		{"artifacts with detach", []string{"--runner", "tiny", "--script", good, "--artifacts", t.TempDir(), "--detach"}, "--detach does not"},
		{"max-input zero", []string{"--runner", "tiny", "--script", good, "--max-input", "0"}, "bad flags"},
		{"max-artifacts junk", []string{"--runner", "tiny", "--script", good, "--max-artifacts", "lots"}, "bad flags"},
		{"missing input", []string{"--runner", "tiny", "--script", good, "--input", unreadable}, "missing.sh: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runSubmit(append([]string{"--nats", "nats://127.0.0.1:1"}, tt.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d mentioning %q", code, stderr, exitUsage, tt.want)
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	code, _, stderr := runSubmit("-h")
	if code != 0 || !strings.Contains(stderr, "Exit status") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestUnreachableNATS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, _, stderr := runSubmit("--nats", "nats://"+addr, "--runner", "tiny", "--script", write(t, "s.sh", "true\n"))
	if code != exitNoNATS || !strings.Contains(stderr, "cannot reach NATS") {
		t.Fatalf("exit %d, stderr %q; want %d", code, stderr, exitNoNATS)
	}
}

func TestNoSuchRunnerQueuesNothing(t *testing.T) {
	s, err := natsserver.Start("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	script := write(t, "s.sh", "true\n")

	// A server no worker has set up.
	code, _, stderr := runSubmit("--nats", s.ClientURL(), "--runner", "tiny", "--script", script)
	if code != exitNoRunner || !strings.Contains(stderr, "start a worker") {
		t.Fatalf("exit %d, stderr %q; want %d", code, stderr, exitNoRunner)
	}

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	q, err := queue.Setup(context.Background(), js, queue.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runSubmit("--nats", s.ClientURL(), "--runner", "nosuch", "--script", script)
	if code != exitNoRunner || !strings.Contains(stderr, `no such runner: "nosuch"`) {
		t.Fatalf("exit %d, stderr %q; want %d", code, stderr, exitNoRunner)
	}
	st, err := js.Stream(context.Background(), q.Names().JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 0 {
		t.Fatalf("jobs stream holds %d messages, want 0", info.State.Msgs)
	}
}

func TestDetachPrintsJobIDAndQueues(t *testing.T) {
	s, err := natsserver.Start("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	q, err := queue.Setup(context.Background(), js, queue.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Puller(context.Background(), "tiny", queue.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runSubmit("--nats", s.ClientURL(), "--runner", "tiny", "--script", write(t, "s.sh", "true\n"),
		"--env", "FOO=a=b", "--timeout", "90s", "--detach")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	st, err := q.Status(context.Background(), id)
	if err != nil || st.State != queue.StateQueued {
		t.Fatalf("status of %q: %+v, %v", id, st, err)
	}
	d, err := mustPull(t, q)
	if err != nil {
		t.Fatal(err)
	}
	if d.Job.ID != id || d.Job.Env["FOO"] != "a=b" || d.Job.TimeoutSeconds != 90 {
		t.Fatalf("queued job = %+v", d.Job)
	}
}

func mustPull(t *testing.T, q *queue.Queue) (*queue.Delivery, error) {
	t.Helper()
	p, err := q.Puller(context.Background(), "tiny", queue.ConsumerOptions{})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	d, err := p.Next(ctx)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	return d, nil
}
