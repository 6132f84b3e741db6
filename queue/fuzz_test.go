package queue_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smallscale-ci/smallscale/queue"
)

// FuzzDecodeJob feeds arbitrary bytes to DecodeJob, the first code a job message from the
// network meets. The seeds are the f.Add calls below and the files in testdata/fuzz/FuzzDecodeJob
// (the hostile cases); `go test` runs them all as regression tests.
//
// Properties: DecodeJob never panics; every error wraps ErrInvalidJob and comes with a job
// whose id is empty or a valid lower-case UUID (Puller.Next reports a refusal under that id);
// an accepted job validates, re-encodes, and decodes again to the same job, whose encoding is
// byte for byte the first one.
func FuzzDecodeJob(f *testing.F) {
	const id = "0190a5d0-7c5e-7000-8000-000000000001"
	f.Add([]byte(`{"format":1,"id":"` + id + `","runner":"tiny","script":"echo hi","submitted_at":"2026-12-04T10:00:00Z"}`))
	f.Add([]byte(`{"format":1,"id":"` + id + `","runner":"tiny","script":"make test\n","env":{"FOO":"bar","_x":"","PATH_EXTRA":"/opt/bin"},` +
		`"timeout_seconds":600,"inputs":{"object":"` + id + `/input.tar","size":10240},"max_artifact_bytes":1048576,` +
		`"submitted_at":"2026-12-04T10:00:00.123456789+05:30"}`))
	f.Add([]byte(`{"format":1,"id":"` + id + `","runner":"win-11_x64","script":"echo <a> & b \u2028 é 😀","env":{},"inputs":{"object":"` +
		id + `/input.tar","size":0},"submitted_at":null}`))
	// Built here rather than checked in: over 64 KiB of environment, and just under the limit.
	f.Add([]byte(`{"format":1,"id":"` + id + `","runner":"tiny","script":"x","env":{"BIG":"` + strings.Repeat("x", queue.MaxEnvBytes) + `"}}`))
	f.Add([]byte(`{"format":1,"id":"` + id + `","runner":"tiny","script":"x","env":{"BIG":"` + strings.Repeat("x", queue.MaxEnvBytes-5) + `"}}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		job, err := queue.DecodeJob(data)
		if err != nil {
			if !errors.Is(err, queue.ErrInvalidJob) {
				t.Fatalf("error %q does not wrap ErrInvalidJob", err)
			}
			if job.ID != "" && !lowerUUID(job.ID) {
				t.Fatalf("refused job carries id %q: want \"\" or a lower-case UUID (error: %v)", job.ID, err)
			}
			return
		}
		if err := job.Validate(); err != nil {
			t.Fatalf("DecodeJob accepted a job that does not validate: %v", err)
		}
		enc, err := job.Encode()
		if err != nil {
			// A valid job may grow when escaped (U+2028 takes 6 bytes instead of 3, a control
			// character 6 instead of the 2 of "\t"), but not past twice the message it came from.
			if errors.Is(err, queue.ErrInvalidJob) && len(data) > queue.MaxJobBytes/2 {
				return
			}
			t.Fatalf("Encode of an accepted job: %v", err)
		}
		again, err := queue.DecodeJob(enc)
		if err != nil {
			t.Fatalf("DecodeJob refuses what Encode wrote: %v\n%s", err, enc)
		}
		if !sameJob(job, again) {
			t.Fatalf("round trip changed the job:\n%#v\n%#v\nencoded: %s", job, again, enc)
		}
		enc2, err := again.Encode()
		if err != nil {
			t.Fatalf("second Encode: %v", err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
		if !json.Valid(enc) {
			t.Fatalf("Encode wrote invalid JSON: %s", enc)
		}
	})
}

// lowerUUID is a UUID in canonical lower-case form, the only spelling of a job id.
func lowerUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36 && strings.ToLower(s) == s
}

// sameJob compares two decoded jobs: times by instant and offset (not by *time.Location), and an
// empty env like a missing one (omitempty drops it on encoding).
func sameJob(a, b queue.Job) bool {
	_, aOff := a.SubmittedAt.Zone()
	_, bOff := b.SubmittedAt.Zone()
	if !a.SubmittedAt.Equal(b.SubmittedAt) || aOff != bOff {
		return false
	}
	a.SubmittedAt, b.SubmittedAt = time.Time{}, time.Time{}
	if len(a.Env) == 0 {
		a.Env = nil
	}
	if len(b.Env) == 0 {
		b.Env = nil
	}
	return reflect.DeepEqual(a, b)
}
