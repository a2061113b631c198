// Command kube-controller-manager is the upstream kube-controller-manager
// (k8s.io/kubernetes/cmd/kube-controller-manager), built at the same Kubernetes version as
// kube-apiserver-testenv. It runs the Deployment, ReplicaSet, Job, namespace, garbage
// collector, service-account token and the other built-in controllers of the test cluster.
package main

import (
	"os"
	_ "time/tzdata" // for CronJob time zone support, as upstream

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"

	"simplegitops.local/k8s-testenv/internal/parentwatch"
)

func main() {
	// TESTENV_EXIT_WITH_PARENT=1: stop when the test process that started it is gone.
	parentwatch.FromEnv("kube-controller-manager")
	command := app.NewControllerManagerCommand()
	os.Exit(cli.Run(command))
}
