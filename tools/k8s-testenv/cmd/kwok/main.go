// Command kwok is the upstream kwok controller (sigs.k8s.io/kwok/cmd/kwok, the version pinned in
// go.mod): it plays the kubelet for fake Node objects, moving their pods through the lifecycle
// its Stage configuration describes. Built against the same Kubernetes libraries as the other
// binaries; the body is upstream's main.
package main

import (
	"os"

	"github.com/spf13/pflag"

	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/cmd"
	"sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"

	"simplegitops.local/k8s-testenv/internal/parentwatch"
)

func main() {
	// TESTENV_EXIT_WITH_PARENT=1: stop when the test process that started it is gone.
	parentwatch.FromEnv("kwok")
	flagset := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flagset.ParseErrorsAllowlist.UnknownFlags = true
	flagset.Usage = func() {}

	ctx := signals.SetupSignalContext()
	ctx, logger := log.InitFlags(ctx, flagset)

	ctx, err := config.InitFlags(ctx, flagset)
	if err != nil {
		_, _ = os.Stderr.Write([]byte(flagset.FlagUsages()))
		logger.Error("Init config flags", "err", err)
		os.Exit(1)
	}

	command := cmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flagset)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("Execute exit", "err", err)
		os.Exit(1)
	}
}
