package vmrun

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"libvirt.org/go/libvirt"
)

// agent speaks the QEMU guest-agent protocol to one domain through libvirt. libvirt runs one
// agent command at a time per domain; every call carries an explicit timeout.
type agent struct{ dom *libvirt.Domain }

// agentTimeout bounds a single agent command (libvirt adds its own guest-sync before it).
const agentTimeout = 10 * time.Second

func (a agent) call(cmd string, args any, reply any, timeout time.Duration) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	secs := max(int(timeout/time.Second), 1)
	out, err := a.dom.QemuAgentCommand(string(data), libvirt.DomainQemuAgentCommandTimeout(secs), 0)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrAgent, cmd, err)
	}
	if reply == nil {
		return nil
	}
	var wrapped struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(out), &wrapped); err != nil {
		return fmt.Errorf("%w: %s: reply %q: %v", ErrAgent, cmd, out, err)
	}
	if err := json.Unmarshal(wrapped.Return, reply); err != nil {
		return fmt.Errorf("%w: %s: reply %q: %v", ErrAgent, cmd, out, err)
	}
	return nil
}

// waitReady polls guest-ping until the agent answers or ctx ends. It gives up at once when the
// libvirt connection died (libvirtd restarted): no answer can come through it.
func (a agent) waitReady(ctx context.Context, every time.Duration, conn *libvirt.Connect) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		err := a.call("guest-ping", nil, nil, 2*time.Second)
		if err == nil {
			return nil
		}
		if alive, aerr := conn.IsAlive(); aerr != nil || !alive {
			return fmt.Errorf("%w: connection lost while the guest booted: %v", ErrLibvirt, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v (last: %v)", ErrBoot, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// maxWriteChunk keeps each guest-file-write far below the agent's message limits.
const maxWriteChunk = 512 << 10

// writeFile creates path in the guest with data.
func (a agent) writeFile(path string, data []byte) error {
	var handle int64
	if err := a.call("guest-file-open", map[string]any{"path": path, "mode": "w"}, &handle, agentTimeout); err != nil {
		return fmt.Errorf("open %s in guest: %w", path, err)
	}
	for len(data) > 0 {
		c := data[:min(len(data), maxWriteChunk)]
		var w struct {
			Count int `json:"count"`
		}
		if err := a.call("guest-file-write", map[string]any{"handle": handle, "buf-b64": base64.StdEncoding.EncodeToString(c)}, &w, agentTimeout); err != nil {
			_ = a.call("guest-file-close", map[string]any{"handle": handle}, nil, agentTimeout)
			return fmt.Errorf("write %s in guest: %w", path, err)
		}
		if w.Count <= 0 {
			_ = a.call("guest-file-close", map[string]any{"handle": handle}, nil, agentTimeout)
			return fmt.Errorf("%w: write %s in guest: wrote nothing", ErrAgent, path)
		}
		data = data[w.Count:]
	}
	if err := a.call("guest-file-close", map[string]any{"handle": handle}, nil, agentTimeout); err != nil {
		return fmt.Errorf("close %s in guest: %w", path, err)
	}
	return nil
}

// exec starts argv in the guest without capturing its output (captured output only arrives
// when the process exits and is lost above a few MiB) and returns its pid.
func (a agent) exec(argv []string, env []string) (int, error) {
	var r struct {
		PID int `json:"pid"`
	}
	args := map[string]any{"path": argv[0], "arg": argv[1:], "env": env, "capture-output": false}
	if err := a.call("guest-exec", args, &r, agentTimeout); err != nil {
		return 0, err
	}
	return r.PID, nil
}

type execStatus struct {
	Exited   bool `json:"exited"`
	ExitCode *int `json:"exitcode"`
	Signal   *int `json:"signal"`
}

// code is the process' exit status, 128+signal when a signal ended it.
func (s execStatus) code() int {
	switch {
	case s.ExitCode != nil:
		return *s.ExitCode
	case s.Signal != nil:
		return 128 + *s.Signal
	}
	return -1
}

// status asks once whether pid exited. The agent forgets a process once it has reported it
// exited, so the caller must keep that answer.
func (a agent) status(pid int) (execStatus, error) {
	var s execStatus
	err := a.call("guest-exec-status", map[string]any{"pid": pid}, &s, agentTimeout)
	return s, err
}
