//go:build unix

package activator

import (
	"net"
	"syscall"
)

// stillOpen peeks at an idle connection without blocking: an instance that closed it (its own
// idle timeout, a restart) has sent EOF or a reset, and a request written to it would be lost.
// Any unread byte also disqualifies it: nothing is owed on an idle HTTP/1.1 connection.
func stillOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var open bool
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && open
}
