// Command kube-apiserver-testenv runs an embedded etcd and the upstream kube-apiserver in one
// process, for tests and benchmarks that need a real Kubernetes API server without a cluster.
//
// Usage:
//
//	kube-apiserver-testenv [testenv flags] -- [kube-apiserver flags]
//
// The testenv flags (before "--") configure the embedded etcd; everything after "--" is handed
// unchanged to the upstream kube-apiserver command (k8s.io/kubernetes/cmd/kube-apiserver/app).
// Unless "--etcd-servers" is among the kube-apiserver flags, it is set to the embedded etcd.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // for timeZone support in CronJob, as upstream

	"go.etcd.io/etcd/server/v3/embed"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	"simplegitops.local/k8s-testenv/internal/parentwatch"
)

type etcdOptions struct {
	host         string
	clientPort   int
	peerPort     int
	dataDir      string
	logLevel     string
	unsafeNoSync bool
	startTimeout time.Duration
	withParent   bool
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ownArgs, apiserverArgs := splitArgs(args)

	opts := etcdOptions{}
	fs := flag.NewFlagSet("kube-apiserver-testenv", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kube-apiserver-testenv [flags] -- [kube-apiserver flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.host, "etcd-host", envOr("TESTENV_ETCD_HOST", "127.0.0.1"),
		"loopback address the embedded etcd listens on (env TESTENV_ETCD_HOST)")
	fs.IntVar(&opts.clientPort, "etcd-listen-client-port", envInt("TESTENV_ETCD_CLIENT_PORT", 0),
		"client port of the embedded etcd; 0 picks a free port (env TESTENV_ETCD_CLIENT_PORT)")
	fs.IntVar(&opts.peerPort, "etcd-listen-peer-port", envInt("TESTENV_ETCD_PEER_PORT", 0),
		"peer port of the embedded etcd; 0 picks a free port (env TESTENV_ETCD_PEER_PORT)")
	fs.StringVar(&opts.dataDir, "etcd-data-dir", os.Getenv("TESTENV_ETCD_DATA_DIR"),
		"data directory of the embedded etcd; empty means a temporary one, removed at exit "+
			"(env TESTENV_ETCD_DATA_DIR)")
	fs.StringVar(&opts.logLevel, "etcd-log-level", envOr("TESTENV_ETCD_LOG_LEVEL", "error"),
		"log level of the embedded etcd: debug, info, warn, error (env TESTENV_ETCD_LOG_LEVEL)")
	fs.BoolVar(&opts.unsafeNoSync, "etcd-unsafe-no-fsync", envBool("TESTENV_ETCD_UNSAFE_NO_FSYNC", true),
		"disable fsync in the embedded etcd: faster, loses data on a crash (fine for tests)")
	fs.DurationVar(&opts.startTimeout, "etcd-start-timeout", 60*time.Second,
		"how long to wait for the embedded etcd to be ready")
	fs.BoolVar(&opts.withParent, "exit-with-parent", envBool(parentwatch.EnvVar, false),
		"stop (as on SIGTERM) when the parent process exits, so a killed test run leaves no "+
			"server behind (env TESTENV_EXIT_WITH_PARENT)")
	if err := fs.Parse(ownArgs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kube-apiserver-testenv: unexpected argument %q before \"--\"\n", fs.Arg(0))
		return 2
	}

	if opts.withParent {
		go parentwatch.Watch("kube-apiserver-testenv", os.Getppid())
	}

	command := app.NewAPIServerCommand()
	command.SetArgs(apiserverArgs)
	if needsNoServer(apiserverArgs) {
		return cli.Run(command)
	}

	etcd, cleanup, err := startEtcd(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-apiserver-testenv: embedded etcd: %v\n", err)
		return 1
	}
	defer cleanup()

	clientURL := etcd.Clients[0].Addr().String()
	if !hasFlag(apiserverArgs, "etcd-servers") {
		apiserverArgs = append([]string{"--etcd-servers=http://" + clientURL}, apiserverArgs...)
	}
	fmt.Fprintf(os.Stderr, "kube-apiserver-testenv: embedded etcd ready at http://%s\n", clientURL)

	// Stop the whole process if etcd fails underneath the API server.
	go func() {
		if err, ok := <-etcd.Err(); ok && err != nil {
			fmt.Fprintf(os.Stderr, "kube-apiserver-testenv: embedded etcd failed: %v\n", err)
			cleanup()
			os.Exit(1)
		}
	}()

	command.SetArgs(apiserverArgs)
	return cli.Run(command)
}

// splitArgs separates the testenv's own flags from kube-apiserver's at the first "--". With no
// "--", every argument goes to kube-apiserver (the testenv flags then come from the environment).
func splitArgs(args []string) (own, apiserver []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:]
		}
	}
	return nil, args
}

// needsNoServer tells whether kube-apiserver will only print something (help, version), so
// that no etcd need be started for it.
func needsNoServer(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "--version" || strings.HasPrefix(a, "--version=") {
			return true
		}
	}
	return false
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") {
			return true
		}
	}
	return false
}

func startEtcd(opts etcdOptions) (*embed.Etcd, func(), error) {
	removeDir := false
	if opts.dataDir == "" {
		dir, err := os.MkdirTemp("", "kube-apiserver-testenv-etcd-")
		if err != nil {
			return nil, nil, err
		}
		opts.dataDir = dir
		removeDir = true
	}
	clientPort, err := portOrFree(opts.host, opts.clientPort)
	if err != nil {
		return nil, nil, err
	}
	peerPort, err := portOrFree(opts.host, opts.peerPort)
	if err != nil {
		return nil, nil, err
	}
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort(opts.host, fmt.Sprint(clientPort))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort(opts.host, fmt.Sprint(peerPort))}

	cfg := embed.NewConfig()
	cfg.Name = "testenv"
	cfg.Dir = opts.dataDir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = opts.logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = opts.unsafeNoSync

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		if removeDir {
			_ = os.RemoveAll(opts.dataDir)
		}
		return nil, nil, err
	}
	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			e.Close()
			if removeDir {
				_ = os.RemoveAll(opts.dataDir)
			}
		})
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, cleanup, nil
	case err := <-e.Err():
		cleanup()
		return nil, nil, fmt.Errorf("failed while starting: %w", err)
	case <-time.After(opts.startTimeout):
		e.Server.Stop()
		cleanup()
		return nil, nil, fmt.Errorf("not ready after %s", opts.startTimeout)
	}
}

// portOrFree returns port, or when it is 0 a port that was free on host a moment ago.
func portOrFree(host string, port int) (int, error) {
	if port != 0 {
		return port, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil {
		fmt.Fprintf(os.Stderr, "kube-apiserver-testenv: ignoring %s=%q: not a number\n", name, v)
		return def
	}
	return n
}

func envBool(name string, def bool) bool {
	switch strings.ToLower(os.Getenv(name)) {
	case "1", "true", "yes":
		return true
	case "0", "false", "no":
		return false
	default:
		return def
	}
}
