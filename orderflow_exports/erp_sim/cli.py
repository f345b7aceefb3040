"""``orderflow-exports erp-sim``: run the simulated ERP against the configured orgs."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``erp-sim`` command to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "erp-sim",
        help="simulated ERP: take exported orders and write ack files (demo, soak tests)",
        description="Poll each enabled org's export folder (erp_connector_config: local or SFTP, "
        "pinned host key, the org's secret references), move every *.json into taken/ inside "
        "it, validate it against the published JSON Schema and, after --delay seconds, write "
        "an ack file into the org's ack folder: accepted with an ERP order number, rejected "
        "with a reason, or none at all (silent, to exercise ACK_TIMEOUT).",
    )
    parser.add_argument("--once", action="store_true", help="one pass, then its pending acks")
    parser.add_argument(
        "--interval", type=_positive, default=5.0, help="seconds between passes (default 5)"
    )
    parser.add_argument(
        "--reject-ratio", type=_ratio, default=0.1, help="share of orders rejected (default 0.1)"
    )
    parser.add_argument(
        "--silent-ratio",
        type=_ratio,
        default=0.0,
        help="share of orders never answered (default 0)",
    )
    parser.add_argument(
        "--delay", type=_non_negative, default=0.0, help="seconds before an ack is written"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the decisions (default 0)")
    parser.add_argument(
        "--org", action="append", help="only this org (repeatable; default every enabled org)"
    )
    parser.set_defaults(func=cmd_erp_sim)


def cmd_erp_sim(args: argparse.Namespace) -> int:
    """Run the simulator until interrupted (or one pass with ``--once``)."""
    from orderflow_exports.cli.common import open_engine
    from orderflow_exports.domain.naming import validate_id
    from orderflow_exports.erp_sim.decisions import Policy
    from orderflow_exports.erp_sim.simulator import ErpSimulator
    from orderflow_exports.erp_sim.wiring import connector_source, dropzone_connector

    for org in args.org or []:
        validate_id(org, "--org")
    policy = Policy(
        reject_ratio=args.reject_ratio,
        silent_ratio=args.silent_ratio,
        delay_seconds=args.delay,
        seed=args.seed,
    )
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s erp-sim %(message)s"
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    configs = connector_source(open_engine(), args.org)
    if not configs():
        logging.getLogger("orderflow_exports.erp_sim").warning("no enabled connectors")
    simulator = ErpSimulator(configs, dropzone_connector(), policy)
    try:
        simulator.run(interval=args.interval, once=args.once, stop=lambda: stopping)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.close()
    s = simulator.stats
    print(
        f"erp-sim: took {s.taken}, accepted {s.accepted}, rejected {s.rejected}, "
        f"silent {s.silent}, unreadable {s.unreadable}, org errors {s.org_errors}, "
        f"acks still pending {simulator.pending}"
    )
    return 0
