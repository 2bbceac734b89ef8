package local

import "syscall"

// sysProcAttr puts an instance in its own process group, so a signal reaches the children it
// started too, and has the kernel kill it if sluice dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
