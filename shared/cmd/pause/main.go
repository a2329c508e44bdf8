// Command pause is the sandbox ("pause") container of the test
// environment's real node: it holds a Pod's namespaces open, reaps the
// children it inherits as PID 1, and exits on SIGTERM or SIGINT. The node
// has no internet, so this image is built here instead of being pulled
// from registry.k8s.io; it does what Kubernetes' own pause.c does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
