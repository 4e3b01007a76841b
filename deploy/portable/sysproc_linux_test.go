package portable

import (
	"os"
	"syscall"
)

// sysProcAttr makes the kernel kill a child (job server, pipeline) when the
// test process dies, even if it dies before its cleanups run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// groupSysProcAttr is sysProcAttr for boot, in a process group of its own
// so that killGroup also reaches the worker binary boot runs.
func groupSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// killGroup kills the process group p leads (a boot we started).
func killGroup(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
}
