package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func runWorker(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsEveryVariable(t *testing.T) {
	code, _, stderr := runWorker(t, nil, "-h")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, v := range []string{"SMALLSCALE_NATS_URL", "SMALLSCALE_RUNNERS_DIR", "SMALLSCALE_CONCURRENCY", "SMALLSCALE_DOMAIN_TYPE", "SMALLSCALE_BOOT_TIMEOUT", "SMALLSCALE_JOB_TIMEOUT", "SMALLSCALE_ACK_WAIT", "SMALLSCALE_WORKER_NAME", "SMALLSCALE_LIBVIRT_URI", "SMALLSCALE_POOL"} {
		if !strings.Contains(stderr, v) {
			t.Errorf("-h does not mention %s", v)
		}
	}
}

func TestBadConfigurationIsNamed(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SMALLSCALE_CONCURRENCY": "0"}, "SMALLSCALE_CONCURRENCY must be at least 1"},
		{map[string]string{"SMALLSCALE_CONCURRENCY": "two"}, "CONCURRENCY"},
		{map[string]string{"SMALLSCALE_ACK_WAIT": "1s"}, "SMALLSCALE_ACK_WAIT"},
		{map[string]string{"SMALLSCALE_DOMAIN_TYPE": "xen"}, "SMALLSCALE_DOMAIN_TYPE"},
		{map[string]string{"SMALLSCALE_RUNNERS_DIR": dir + "/nope"}, "is not a directory"},
		{map[string]string{"SMALLSCALE_WORKER_NAME": "a.b"}, "SMALLSCALE_WORKER_NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			env := map[string]string{"SMALLSCALE_RUNNERS_DIR": dir}
			for k, v := range tt.env {
				env[k] = v
			}
			code, _, stderr := runWorker(t, env, "check")
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %q", code, stderr, tt.want)
			}
		})
	}
}

func TestCheckReportsEachRunner(t *testing.T) {
	if _, err := os.Stat("../../runners/tiny/vm.xml"); err != nil && os.Getenv("SMALLSCALE_E2E") != "1" {
		t.Skip("the tiny runner is not built (make runner); SMALLSCALE_E2E=1 makes this a failure")
	}
	code, stdout, _ := runWorker(t, map[string]string{"SMALLSCALE_RUNNERS_DIR": "../../runners"}, "check")
	if code != 0 || !strings.Contains(stdout, "ok   tiny") {
		t.Fatalf("exit %d, stdout %q (is the tiny runner built? make runner)", code, stdout)
	}
	broken := t.TempDir()
	code, stdout, _ = runWorker(t, map[string]string{"SMALLSCALE_RUNNERS_DIR": broken}, "check")
	if code != 1 || !strings.Contains(stdout, "no runner folders") {
		t.Fatalf("empty runners dir: exit %d, stdout %q", code, stdout)
	}
}
