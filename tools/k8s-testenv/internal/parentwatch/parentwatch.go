// Package parentwatch stops a test-environment process once the process that started it is
// gone, so that a killed test run (kill -9 of pytest) leaves no server or controller behind.
package parentwatch

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// EnvVar turns the watch on for the binaries whose flags are upstream's own (the
// controller-manager, scheduler and kwok): any of 1, true, yes.
const EnvVar = "TESTENV_EXIT_WITH_PARENT"

// FromEnv starts Watch when EnvVar is set.
func FromEnv(name string) {
	switch strings.ToLower(os.Getenv(EnvVar)) {
	case "1", "true", "yes":
		go Watch(name, os.Getppid())
	}
}

// Watch sends this process SIGTERM (the upstream command then shuts down gracefully) once the
// parent process ppid is gone, and exits outright if that has not ended it within 30 s.
func Watch(name string, ppid int) {
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() == ppid {
			continue
		}
		fmt.Fprintf(os.Stderr, "%s: parent process exited; stopping\n", name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(30 * time.Second)
		os.Exit(1)
	}
}
