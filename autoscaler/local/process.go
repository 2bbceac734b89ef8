//go:build unix

package local

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// process is one run of an instance's command.
type process struct {
	cmd     *exec.Cmd
	stderr  *lastLine
	started time.Time
	exited  chan struct{} // closed once the process is reaped
	err     error         // cmd.Wait's, valid after exited
}

// startProcess runs spec with PORT=port. The goroutine it starts ends when the process exits;
// every caller waits for exited, and a process is always SIGKILLed in the end, so it cannot leak.
func startProcess(spec Spec, baseEnv []string, port int, out *logFile) (*process, error) {
	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = append(append(append([]string(nil), baseEnv...), spec.Env...), fmt.Sprintf("PORT=%d", port))
	stderr := &lastLine{next: out}
	cmd.Stdout, cmd.Stderr = out, stderr
	cmd.SysProcAttr = sysProcAttr()
	// A grandchild holding the output pipes open must not keep Wait from returning.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, stderr: stderr, started: time.Now(), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		// The group may outlive its leader; nothing of an instance may survive it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(p.exited)
	}()
	return p, nil
}

// signal sends sig to the instance's whole process group.
func (p *process) signal(sig syscall.Signal) {
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = p.cmd.Process.Signal(sig)
	}
}

// exitReason says how the process ended, with the last line it wrote to stderr.
func (p *process) exitReason() string {
	r := "exited"
	if st := p.cmd.ProcessState; st != nil {
		r = st.String() // "exit status 1", "signal: killed"
	} else if p.err != nil {
		r = p.err.Error()
	}
	if line := p.stderr.Last(); line != "" {
		r += ": " + line
	}
	return r
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// freePort asks the kernel for a port on loopback that none of inUse holds. The app binds it a
// moment later; if something else took it meanwhile the app fails and is restarted on another.
func freePort(inUse map[int]bool) (int, error) {
	for range 16 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !inUse[port] {
			return port, nil
		}
	}
	return 0, errors.New("find a free port: the kernel keeps handing out ports in use")
}
