package queue

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeJob(t *testing.T) {
	good := `{"format":1,"id":"0190a5d0-7c5e-7000-8000-000000000001","runner":"tiny","script":"echo hi","env":{"FOO":"bar"},"timeout_seconds":60,"submitted_at":"2026-12-04T10:00:00Z"}`
	hugeEnv := `{"format":1,"id":"0190a5d0-7c5e-7000-8000-000000000001","runner":"tiny","script":"x","env":{"BIG":"` + strings.Repeat("x", MaxEnvBytes) + `"}}`
	tests := []struct {
		name, data, wantErr string
		wantID              bool
	}{
		{"good", good, "", true},
		{"not json", `{"format":`, "not a job message", false},
		{"unknown format", strings.Replace(good, `"format":1`, `"format":2`, 1), "format 2 is not supported", true},
		{"unknown field", strings.Replace(good, `"runner"`, `"color":"red","runner"`, 1), `unknown field "color"`, true},
		{"wrong field type", strings.Replace(good, `"timeout_seconds":60`, `"timeout_seconds":"60s"`, 1), "timeout_seconds", true},
		{"bad runner", strings.Replace(good, `"runner":"tiny"`, `"runner":"../etc"`, 1), "runner name", true},
		{"empty script", strings.Replace(good, `"script":"echo hi"`, `"script":""`, 1), "script is empty", true},
		{"reserved env", strings.Replace(good, `"FOO"`, `"CI_JOB_ID"`, 1), "reserved", true},
		{"bad env name", strings.Replace(good, `"FOO"`, `"A=B"`, 1), "env name", true},
		{"huge env", hugeEnv, "over the limit", true},
		{"negative timeout", strings.Replace(good, `"timeout_seconds":60`, `"timeout_seconds":-1`, 1), "timeout_seconds", true},
		{"trailing data", good + `{}`, "trailing data", true},
		{"bad id", strings.Replace(good, `0190a5d0-7c5e-7000-8000-000000000001`, `x`, 1), "not a lower-case UUID", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := DecodeJob([]byte(tt.data))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !errors.Is(err, ErrInvalidJob) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrInvalidJob mentioning %q", err, tt.wantErr)
			}
			if got := validID(j.ID); got != tt.wantID {
				t.Fatalf("job id readable = %v, want %v (id %q)", got, tt.wantID, j.ID)
			}
		})
	}
}

func TestNewJobIDsAreUniqueAndOrdered(t *testing.T) {
	prev := ""
	for range 1000 {
		j, err := NewJob("tiny", "true")
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Validate(); err != nil {
			t.Fatal(err)
		}
		if j.ID <= prev {
			t.Fatalf("id %s does not sort after %s", j.ID, prev)
		}
		prev = j.ID
	}
}
