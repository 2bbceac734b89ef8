//go:build unix && !linux

package local

import "syscall"

// sysProcAttr puts an instance in its own process group, so a signal reaches the children it
// started too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
