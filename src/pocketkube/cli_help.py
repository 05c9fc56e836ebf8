"""The help side of the command line: an example for every command (as `--help`'s epilog),
the grouped command list of `pocketkube --help`, `--version` / `version`, and `completion`.

Applied to cli._parser()'s tree after it is built (`finish`), so commands keep their flags where
they are defined and gain their examples here, by command path. An example whose flags the
parser does not have (yet) is left out; tests/unit/test_cli_help.py checks that every command
shows at least one and that each shown example parses.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from pocketkube import KUBERNETES_VERSION, __version__
from pocketkube.cli_tree import subcommands, subparsers_action, walk

# Command path -> (comment, command line) pairs, in kubectl's "Examples:" style.
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "": (("Start a cluster (Ctrl-C stops it)", "pocketkube up"),
         ("Or in the background, then stop it", "pocketkube up -d"),
         ("", "pocketkube down"),
         ("Use it", "pocketkube kubectl get pods -A")),
    "up": (("A 3-node cluster in the foreground (Ctrl-C stops it)", "pocketkube up"),
           ("In the background: returns once the cluster is Ready", "pocketkube up -d"),
           ("A second cluster beside the first, with its own data dir, port and addresses",
            "pocketkube up --name dev -d"),
           ("One node, pods as host processes (no root needed)", "pocketkube up --nodes 1 --runtime process"),
           ("Pull through a registry mirror, and from a plain-HTTP registry",
            "pocketkube up --registry-mirror https://mirror.gcr.io --insecure-registry registry.lan:5000"),
           ("Keep the state in etcd", "pocketkube up --datastore etcd://127.0.0.1:2379")),
    "down": (("Stop the cluster (pods, agents, server, data-plane rules)", "pocketkube down"),
             ("Stop the cluster named dev and delete its data", "pocketkube down --name dev --delete")),
    "status": (("Every cluster: state, API address, nodes Ready, runtime, uptime", "pocketkube status"),),
    "list": (("The names of the clusters", "pocketkube list"),),
    "logs": (("The API server's log", "pocketkube logs server"),
             ("Follow the first node's log", "pocketkube logs node-1 -f")),
    "doctor": (("What this host lacks for each mode, and the command that fixes it", "pocketkube doctor"),),
    "kubectl": (("kubectl on the pocketkube cluster's kubeconfig", "pocketkube kubectl get pods -A"),
                ("On the cluster of another data dir", "pocketkube kubectl --data-dir /srv/pk get nodes")),
    "image": (("Load an image archive into every node", "pocketkube image load ./app.tar"),),
    "image load": (("Load `docker save` or OCI archives into every node", "pocketkube image load app.tar db.tar.gz"),
                   ("Build nginx from this host's Debian package and load it", "pocketkube image load --from-host nginx")),
    "image ls": (("The images on each node", "pocketkube image ls"),),
    "ui": (("Print a one-time login link to the live cluster map", "pocketkube ui"),
           ("And open it in a browser", "pocketkube ui --open")),
    "token": (("A join token for an agent on another host", "pocketkube token create"),),
    "lb": (("kubectl through whichever of two API servers is up (then point the kubeconfig at "
            "https://127.0.0.1:6444)", "pocketkube lb --server https://10.0.0.5:6443,https://10.0.0.6:6443"),),
    "token create": (("A join token valid for 2 hours", "pocketkube token create --ttl 2h --description ci-runner"),
                     ("One that never expires", "pocketkube token create --ttl 0")),
    "server": (("The API server with the controllers and the scheduler",
                "pocketkube server --data-dir /var/lib/pocketkube --bind-address 0.0.0.0"),
               ("The API server alone, its state in etcd",
                "pocketkube server --no-control-plane --datastore etcd://10.0.0.5:2379")),
    "agent": (("Join this host to a cluster, the join token in $POCKETKUBE_TOKEN (`up` prints the command)",
               "pocketkube agent --server https://192.0.2.1:6443 --node-name worker-1 --node-ip 192.0.2.11 "
               "--routes host-gw --data-dir /var/lib/pocketkube/agent"),
              ("Simulate 100 nodes (kubemark's hollow nodes); the file: one token, or node name -> token",
               "pocketkube agent --server https://127.0.0.1:6443 --token-file hollow-tokens.yaml "
               "--ca-file ~/.pocketkube/pki/ca.crt --hollow 100 --node-ip 127.0.5.1 --pod-cidr 10.128.0.0/12 "
               "--data-dir /tmp/hollow")),
    "controller-manager": (("The controllers and the scheduler against the server of `up`'s data dir",
                            "pocketkube controller-manager --server https://127.0.0.1:6443 --token-file "
                            "~/.pocketkube/pki/controlplane.token --ca-file ~/.pocketkube/pki/ca.crt"),),
    "dns": (("The cluster DNS for the service range 10.96.0.0/16, on a high port",
             "pocketkube dns --server https://127.0.0.1:6443 --token-file ~/.pocketkube/pki/dns.token "
             "--ca-file ~/.pocketkube/pki/ca.crt --listen 127.0.0.53 --port 5353 --service-ip 10.96.0.10"),),
    "ingress-controller": (("The Ingress controller on two node IPs, HTTP on port 8080 only",
                            "pocketkube ingress-controller --server https://127.0.0.1:6443 --token-file "
                            "~/.pocketkube/pki/ingress.token --ca-file ~/.pocketkube/pki/ca.crt "
                            "--address 127.0.1.1 --address 127.0.1.2 --http-port 8080 --https-port 0"),),
    "completion": (("bash: completion in this shell", "pocketkube completion bash"),
                   ("zsh: install it for new shells", "pocketkube completion zsh")),
    "version": (("pocketkube's version, the Kubernetes API it serves, and Python's", "pocketkube version"),),
}
# The install lines shown in `completion --help` (shell redirections cannot be parsed as examples).
COMPLETION_INSTALL = """\
Install:
  bash, this shell:   source <(pocketkube completion bash)
  bash, for good:     echo 'source <(pocketkube completion bash)' >> ~/.bashrc
  zsh:                pocketkube completion zsh > "${fpath[1]}/_pocketkube"   (then open a new shell)
TAB runs no Python; `pocketkube kubectl <TAB>` uses kubectl's own completion."""

# `pocketkube --help`: the commands by what they are for; a command not listed shows under "Other".
GROUPS = (("Clusters", ("up", "down", "status", "list", "logs", "doctor")),
          ("Using a cluster", ("kubectl", "image", "ui")),
          ("Components (what `up` runs; for clusters across hosts)",
           ("server", "agent", "controller-manager", "dns", "ingress-controller", "token", "lb")),
          ("Shell", ("completion", "version")))


def version_text() -> str:
    """pocketkube's version, the Kubernetes version its API serves (the gitVersion `kubectl
    version` shows as the server's, apiserver/discovery.py), and the Python running it."""
    import platform

    return (f"pocketkube {__version__}\n"
            f"Kubernetes API {KUBERNETES_VERSION} (server gitVersion {KUBERNETES_VERSION}+pocketkube.{__version__})\n"
            f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.platform}/{platform.machine()})\n")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(version_text())
        parser.exit()


def applicable(parser: argparse.ArgumentParser, words: list[str]) -> bool:
    """Whether the commands and flags of `words` (what follows the command `parser` parses) are
    all in the tree (an example for a command or a flag still to come waits for it)."""
    p = parser
    for word in words:
        if any(a.nargs == argparse.REMAINDER for a in p._actions):
            return True  # a passthrough (kubectl): the rest is the other program's
        if word.startswith("-") and word != "-":
            if word.split("=", 1)[0] not in p._option_string_actions:
                return False
        elif (sub := subparsers_action(p)) is not None:
            if word not in sub.choices:
                return False
            p = sub.choices[word]
    return True


def examples(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """The examples of one command that its parser can run."""
    def runs(line: str) -> bool:
        words = shlex.split(line)
        n = len(path) + 1
        return words[:n] == ["pocketkube", *path] and applicable(parser, words[n:])

    return [(c, line) for c, line in EXAMPLES.get(" ".join(path), ()) if runs(line)]


def _epilog(pairs: list[tuple[str, str]]) -> str:
    lines = ["Examples:"]
    for comment, line in pairs:
        if comment:
            lines.append(f"  # {comment}")
        lines.append(f"  {line}")
    return "\n".join(lines)


def _command_list(parser: argparse.ArgumentParser) -> str:
    cmds = {name: h for name, h, _ in subcommands(parser)}
    width = max(map(len, cmds)) + 2
    out, listed = [], set()
    for title, names in (*GROUPS, ("Other", tuple(cmds))):
        rows = [f"  {n:<{width}}{cmds[n]}" for n in names if n in cmds and n not in listed]
        listed.update(names)
        if rows:
            out += [f"{title}:", *rows, ""]
    return "\n".join(out)


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --version, `version` and `completion`, and an "Examples:" epilog to every command."""
    parser.add_argument("--version", action=_VersionAction, help="print the versions and exit")
    sub = subparsers_action(parser)
    version = sub.add_parser("version", help="print pocketkube's, the served Kubernetes API's and Python's versions")
    version.set_defaults(cli_help_run=_run_version)
    completion = sub.add_parser("completion", help="print a bash or zsh completion script",
                                description="Print a completion script for bash or zsh.\n\n" + COMPLETION_INSTALL)
    completion.add_argument("shell", choices=("bash", "zsh"), metavar="SHELL", help="bash or zsh")
    completion.set_defaults(cli_help_run=_run_completion)
    for path, p in walk(parser):
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        if pairs := examples(path, p):
            p.epilog = _epilog(pairs)
    # The top level lists its commands by group, in the description; argparse's flat list goes.
    sub.metavar = "COMMAND"
    sub.help = argparse.SUPPRESS
    parser.usage = "pocketkube [-h] [-v] [--version] COMMAND ..."
    parser.description = f"{parser.description}\n\n{_command_list(parser)}\nRun `pocketkube COMMAND --help` for a command's flags and examples."
    return parser


def _run_version(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    sys.stdout.write(version_text())
    return 0


def _run_completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pocketkube.cli_completion import script
    from pocketkube.cli_tree import commands

    sys.stdout.write(script(args.shell, commands(parser), __version__))
    return 0
