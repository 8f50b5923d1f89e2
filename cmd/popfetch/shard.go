package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/popfetch/popfetch/rcfile"
)

// The shard of `popfetch run` and `popfetch fetch` (rcfile.Shard) comes
// from, first to last: --shard i/N; the environment, POPFETCH_SHARD=i/N or
// POPFETCH_SHARD_FROM_HOSTNAME=N (i is the number after the last '-' of
// the host name: a StatefulSet's pod popfetch-2 is shard 2/N); the rc
// file's shard attribute. An invalid value where it is found is a usage
// error, never "all accounts": a replica that polled every account would
// poll each one a second time.
const (
	envShard             = "POPFETCH_SHARD"
	envShardFromHostname = "POPFETCH_SHARD_FROM_HOSTNAME"
)

// shardFlag is --shard; set tells `--shard ""` from no flag.
type shardFlag struct {
	val string
	set bool
}

func (f *shardFlag) String() string { return f.val }
func (f *shardFlag) Set(s string) error {
	f.val, f.set = s, true
	return nil
}

// registerShard adds --shard to a subcommand's flag set.
func registerShard(fs *flag.FlagSet) *shardFlag {
	f := &shardFlag{}
	fs.Var(f, "shard", "poll only the accounts of shard i/N")
	return f
}

// shardEnv is what resolveShard reads of the process: the environment
// and the host name. Tests replace it.
type shardEnv struct {
	lookup   func(string) (string, bool)
	hostname func() (string, error)
}

var processEnv = shardEnv{
	lookup: os.LookupEnv,
	hostname: func() (string, error) {
		// The container runtime sets HOSTNAME to the pod's name; it is
		// also what a test can set.
		if h := os.Getenv("HOSTNAME"); h != "" {
			return h, nil
		}
		return os.Hostname()
	},
}

// resolveShard returns the shard that applies, and where it comes from
// ("--shard", an environment variable, or "" for the rc file's, which
// file is).
func resolveShard(f *shardFlag, env shardEnv, file rcfile.Shard) (rcfile.Shard, string, error) {
	if f != nil && f.set {
		sh, err := rcfile.ParseShard(f.val)
		if err != nil {
			return rcfile.Shard{}, "", fmt.Errorf("--shard: %w", err)
		}
		return sh, "--shard", nil
	}
	v, byIndex := env.lookup(envShard)
	n, byHost := env.lookup(envShardFromHostname)
	switch {
	case byIndex && byHost:
		return rcfile.Shard{}, "", fmt.Errorf("both %s and %s are set; set one", envShard, envShardFromHostname)
	case byIndex:
		sh, err := rcfile.ParseShard(v)
		if err != nil {
			return rcfile.Shard{}, "", fmt.Errorf("%s: %w", envShard, err)
		}
		return sh, envShard, nil
	case byHost:
		sh, err := shardFromHostname(n, env.hostname)
		if err != nil {
			return rcfile.Shard{}, "", fmt.Errorf("%s=%s: %w", envShardFromHostname, n, err)
		}
		return sh, envShardFromHostname, nil
	}
	return file, "", nil
}

// errNoOrdinal: the host name does not end in -NUMBER.
var errNoOrdinal = errors.New("the host name does not end in -NUMBER, as a StatefulSet's pods do (popfetch-0, popfetch-1, ...)")

// shardFromHostname is shard i/n where n is count (a decimal number) and
// i the number after the host name's last '-'.
func shardFromHostname(count string, hostname func() (string, error)) (rcfile.Shard, error) {
	if _, err := rcfile.ParseShard("0/" + count); err != nil {
		return rcfile.Shard{}, fmt.Errorf("the number of replicas: %w", err)
	}
	host, err := hostname()
	if err != nil {
		return rcfile.Shard{}, fmt.Errorf("host name: %w", err)
	}
	_, ord, ok := cutLast(host, "-")
	if i, err := strconv.Atoi(ord); !ok || err != nil || i < 0 || strconv.Itoa(i) != ord {
		return rcfile.Shard{}, fmt.Errorf("host name %q: %w", host, errNoOrdinal)
	}
	sh, err := rcfile.ParseShard(ord + "/" + count)
	if err != nil {
		return rcfile.Shard{}, fmt.Errorf("host name %q: %w (is %s the StatefulSet's number of replicas?)", host, err, count)
	}
	return sh, nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// applyShard sets cfg.Shard from the flag or the environment if either
// gives one, and returns a function that does the same to a config
// reloaded later (the flag and the environment do not change while the
// process runs). It prints a usage error and returns ok = false if the
// flag or the environment is invalid.
func (g *globals) applyShard(f *shardFlag, cfg *rcfile.Config) (apply func(*rcfile.Config), ok bool) {
	sh, src, err := resolveShard(f, processEnv, cfg.Shard)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return nil, false
	}
	apply = func(*rcfile.Config) {}
	if src != "" {
		apply = func(c *rcfile.Config) { c.Shard, c.ShardRange = sh, hcl.Range{} }
	}
	apply(cfg)
	return apply, true
}

// otherShard is the error for an account named on the command line that
// shard sh does not poll.
func otherShard(a *rcfile.Account, sh rcfile.Shard) error {
	return fmt.Errorf("account %q is polled by shard %d/%d, not by this one (%s): run it there, or give its shard with --shard",
		a.Name, rcfile.ShardOf(a.Mailbox(), sh.Count), sh.Count, sh)
}

// shardAccounts narrows accts, chosen on the command line (named is
// true) or all of cfg, to cfg.Shard: a named account of another shard is
// an error, as polling it here would start from a journal that does not
// know it.
func shardAccounts(cfg *rcfile.Config, accts []*rcfile.Account, named bool) ([]*rcfile.Account, error) {
	if !named {
		return cfg.Shard.Owned(accts), nil
	}
	for _, a := range accts {
		if !cfg.Shard.Owns(a) {
			return nil, otherShard(a, cfg.Shard)
		}
	}
	return accts, nil
}

// shardAccounts applies the shard of the flag, the environment or cfg to
// cfg and narrows accts to it (see the function of that name), printing
// any error; the command then exits with exitUsage.
func (g *globals) shardAccounts(f *shardFlag, cfg *rcfile.Config, accts []*rcfile.Account, named bool) ([]*rcfile.Account, bool) {
	if _, ok := g.applyShard(f, cfg); !ok {
		return nil, false
	}
	accts, err := shardAccounts(cfg, accts, named)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return nil, false
	}
	return accts, true
}
