package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on every
// architecture Go supports, whatever the kernel's own HZ.
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time, user plus system over all threads, that process pid has used so far.
// It reads /proc, so it works on Linux only.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime, fields 14 and 15 of a /proc/PID/stat line. The command
// name (field 2) is in parentheses and may hold spaces or parentheses itself, so the fields are
// counted from the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat line %.40q: no ')' after the command name", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat line %.40q: %d fields after the command name, want at least 13", stat, len(f))
	}
	var total time.Duration
	for _, s := range f[11:13] {
		ticks, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat line: CPU time %q: %w", s, err)
		}
		total += time.Duration(ticks) * clockTick
	}
	return total, nil
}

// cpuSnapshot is the CPU time of groups of processes at one moment.
type cpuSnapshot struct {
	self, backend, proxy time.Duration
	err                  error // the first process that could not be read; the snapshot is not usable
}

func sumCPU(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		d, err := cpuTime(pid)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

func takeCPUSnapshot(backend, proxy []int) cpuSnapshot {
	var s cpuSnapshot
	var err error
	if s.self, err = cpuTime(os.Getpid()); err != nil {
		return cpuSnapshot{err: err}
	}
	if s.backend, err = sumCPU(backend); err != nil {
		return cpuSnapshot{err: fmt.Errorf("backend: %w", err)}
	}
	if s.proxy, err = sumCPU(proxy); err != nil {
		return cpuSnapshot{err: fmt.Errorf("proxy: %w", err)}
	}
	return s
}

// CPUPerRequest is the CPU time each side spent per successful request during a measurement:
// the load generator (this process), the backend, and the processes in the target's path
// between them (none for a direct target).
type CPUPerRequest struct {
	Measured                bool
	Loadgen, Backend, Proxy time.Duration
}

func (c CPUPerRequest) Total() time.Duration { return c.Loadgen + c.Backend + c.Proxy }

// cpuPerRequest divides the CPU used between two snapshots by the requests served meanwhile.
func cpuPerRequest(before, after cpuSnapshot, requests int) CPUPerRequest {
	if before.err != nil || after.err != nil || requests <= 0 {
		return CPUPerRequest{}
	}
	n := time.Duration(requests)
	return CPUPerRequest{
		Measured: true,
		Loadgen:  (after.self - before.self) / n,
		Backend:  (after.backend - before.backend) / n,
		Proxy:    (after.proxy - before.proxy) / n,
	}
}

// parsePIDs reads a comma-separated list of process IDs.
func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("%q is not a process ID", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
