// Command kube-scheduler is the upstream kube-scheduler (k8s.io/kubernetes/cmd/kube-scheduler),
// built at the same Kubernetes version as kube-apiserver-testenv. It binds the test cluster's
// pods to its kwok nodes.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"simplegitops.local/k8s-testenv/internal/parentwatch"
)

func main() {
	// TESTENV_EXIT_WITH_PARENT=1: stop when the test process that started it is gone.
	parentwatch.FromEnv("kube-scheduler")
	command := app.NewSchedulerCommand()
	os.Exit(cli.Run(command))
}
