"""`pocketkube doctor`: gather every fact, print the checklist and the mode `up` would pick."""

from __future__ import annotations

import argparse
import sys

from pocketkube.doctor.checks import Settings, evaluate, healthy
from pocketkube.doctor.mode import Mode, decide
from pocketkube.doctor.probes import gather
from pocketkube.doctor.report import render_json, render_text
from pocketkube.net import addresses
from pocketkube.net.hostnet import cluster_id_of


def settings(args: argparse.Namespace, data_dir, mode: Mode) -> Settings:
    """The ports `up` would take, with the Ingress on the node IPs of the mode it would pick, and
    the container-mode ranges (the full mode's, checked whichever mode is picked now)."""
    try:
        plan = addresses.container_plan(cluster_id_of(data_dir), 3)
    except addresses.PlanError:
        plan = None
    if mode.runtime == "containerd":
        node_ips = tuple(n.ip for n in plan.nodes) if plan else ()
    else:
        node_ips = tuple(n.ip for n in addresses.node_plan(3))
    return Settings(bind_address=args.bind_address, port=args.port,
                    ingress_ports=tuple(p for p in (args.ingress_http_port, args.ingress_https_port) if p),
                    node_ips=node_ips, plan=plan)


def run(args: argparse.Namespace, data_dir) -> int:
    facts = gather(full=True)
    mode = decide("auto", "auto", facts)  # auto never raises RuntimeUnavailable
    checks = evaluate(facts, settings(args, data_dir, mode))
    if args.output == "json":
        print(render_json(checks, mode))
    else:
        print(render_text(checks, mode, tty=sys.stdout.isatty()))
    return 0 if healthy(checks) else 1
