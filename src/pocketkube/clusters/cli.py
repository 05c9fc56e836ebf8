"""The command line of named clusters: flags added to `up`/`ui`, the `down`, `status`, `list` and
`logs` subcommands, and `up`'s steps before and after the cluster runs. pocketkube/cli.py only
registers and dispatches here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pocketkube.clusters import names

NAME_HELP = f"the cluster's name (default: {names.DEFAULT_NAME}); each has its own data dir, ports and addresses"


def cluster_name(value: str) -> str:
    if problem := names.name_problem(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def add_name(p: argparse.ArgumentParser, default: str | None = names.DEFAULT_NAME) -> None:
    p.add_argument("--name", type=cluster_name, default=default, help=NAME_HELP)


def register(sub, up: argparse.ArgumentParser, ui: argparse.ArgumentParser) -> None:
    add_name(up)
    up.add_argument("-d", "--detach", action="store_true",
                    help="run the cluster in the background: return once it is Ready (logs in DATA_DIR/logs)")
    # Unset means: the cluster's own data dir and recorded (or newly chosen) port.
    up.set_defaults(data_dir=None, port=None)
    helps = {"data_dir": "where state, certificates and the kubeconfig live (default: ~/.pocketkube, or "
                         "$POCKETKUBE_DATA_DIR, for the default name; ~/.pocketkube-NAME for another)",
             "port": "API server port (default: 6443 for the first cluster; the cluster's recorded port, or "
                     "the next free one from 6443 up, for another)"}
    add_name(ui)
    ui.set_defaults(data_dir=None)
    for action in (*up._actions, *ui._actions):  # the shared flags' help names their static defaults
        action.help = helps.get(action.dest, action.help)
    down = sub.add_parser("down", help="stop a cluster (started by `up -d` or in another terminal)")
    add_name(down)
    down.add_argument("--delete", action="store_true",
                      help="also remove its data dir and its context in ~/.kube/config")
    status = sub.add_parser("status", help="show the clusters: state, API, nodes Ready, runtime, uptime")
    add_name(status, default=None)
    sub.add_parser("list", help="print the clusters' names")
    logs = sub.add_parser("logs", help="print a component's log (server, controller-manager, node-N, dns, "
                                       "ingress, up)")
    logs.add_argument("component", nargs="?", default=None, help="default: server")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what is appended")
    add_name(logs)


def data_dir_of(args: argparse.Namespace, default_dir: Path) -> Path:
    """An explicit --data-dir wins; otherwise the name's."""
    explicit = getattr(args, "data_dir", None)
    return Path(explicit) if explicit is not None else names.data_dir_for(args.name, default_dir)


def user_kubeconfig() -> Path:
    return Path(os.environ.get("HOME", "~")).expanduser() / ".kube" / "config"


def run(args: argparse.Namespace, default_dir: Path) -> int:
    """down | status | list | logs."""
    if args.command == "list":
        from pocketkube.clusters.status import list_clusters

        return list_clusters(default_dir)
    if args.command == "status":
        from pocketkube.clusters.status import status

        return status(default_dir, args.name)
    data_dir = names.data_dir_for(args.name, default_dir)
    if args.command == "logs":
        from pocketkube.clusters.logs import show

        if not data_dir.exists():
            print(f"pocketkube: no cluster named {args.name!r}", file=sys.stderr)
            return 1
        return show(data_dir / "logs", args.component, args.follow)
    from pocketkube.clusters.lifecycle import down

    return down(args.name, data_dir, args.delete, user_kubeconfig())


def prepare_up(args: argparse.Namespace, default_dir: Path) -> int | None:
    """Before `up` starts anything: its data dir, and the exit code when there is nothing to
    start (already running) or it went to the background; None to run it in the foreground."""
    from pocketkube.clusters import lifecycle

    args.data_dir = data_dir_of(args, default_dir)
    args.context = names.context_name(args.name)
    running = lifecycle.clean_if_stale(args.name, args.data_dir)
    if running is not None:
        print("\n".join(lifecycle.reach_lines(args.name, args.data_dir, running)), flush=True)
        return 0
    if args.detach and (code := lifecycle.detach(args.name, args.data_dir)) is not None:
        return code  # the parent; the forked child goes on as the foreground `up`
    explicit = {k: getattr(args, k) for k in ("node_ip_base", "pod_cidr_base", "service_cidr",
                                              "load_balancer_pool", "port")}

    def address_plan(runtime: str) -> dict[str, object]:
        """Chosen once the runtime is known; records the plan and this `up`'s state."""
        from pocketkube.clusters import state
        from pocketkube.proxy.select import choose_kind, nftables_usable

        plan = lifecycle.choose_and_record(args.name, args.data_dir, default_dir, runtime,
                                           {k: v for k, v in explicit.items() if v is not None}, args.bind_address)
        dataplane = choose_kind(args.dataplane, nftables_ok=args.dataplane == "auto" and nftables_usable())
        state.write_state(args.data_dir, state.my_state(args.name, runtime, dataplane, args.nodes,
                                                        args.bind_address, int(plan["port"])))
        return plan

    args.address_plan = address_plan
    return None


def finish_up(args: argparse.Namespace) -> None:
    from pocketkube.clusters import state

    if getattr(args, "address_plan", None) is not None:
        state.remove_state(args.data_dir, os.getpid())


def kubectl_args(args: list[str], default_dir: Path) -> list[str]:
    """`pocketkube kubectl --name NAME ...` is `--data-dir` of that cluster; ValueError on a bad name."""
    if args and (args[0] == "--name" or args[0].startswith("--name=")):
        name, rest = (args[1] if len(args) > 1 else "", args[2:]) if args[0] == "--name" \
            else (args[0].split("=", 1)[1], args[1:])
        if problem := names.name_problem(name):
            raise ValueError(problem)
        return ["--data-dir", str(names.data_dir_for(name, default_dir)), *rest]
    return args
