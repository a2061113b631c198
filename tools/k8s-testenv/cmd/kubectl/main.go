// Command kubectl is the upstream kubectl (k8s.io/kubectl/pkg/cmd), built at the same
// Kubernetes version as kube-apiserver-testenv.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Import to initialize client auth plugins, as upstream.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	// As upstream cmd/kubectl: set the verbosity before the command is built.
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
