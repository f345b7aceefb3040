"""``orderflow-exports erp-sim`` as a subprocess on exports made by the real job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.ack_files import parse_ack
from orderflow_exports.erp_sim.decisions import ack_name
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import orderflow_cli

pytestmark = pytest.mark.slow


def test_erp_sim_once_answers_every_export_of_the_chosen_org(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    globex = env.add_local_connector("globex")
    keys = env.add_drafts(
        SampleDraft("acme", "D-1"), SampleDraft("acme", "D-2"), SampleDraft("globex", "G-1")
    )
    assert env.run_export(keys).success
    acme_rows = env.exports(keys[0]) + env.exports(keys[1])

    done = orderflow_cli(env, "erp-sim", "--once", "--org", "acme", "--reject-ratio", "0")

    assert done.returncode == 0, done.stderr[-3000:]
    assert "took 2, accepted 2, rejected 0" in done.stdout
    for row in acme_rows:
        ack = parse_ack((Path(acme.ack_path) / ack_name(row.id)).read_bytes())
        assert ack.status == "ACKED" and ack.erp_order_number
        assert f"wrote {Path(acme.ack_path) / ack_name(row.id)}" in done.stderr
        assert (Path(acme.export_path) / "taken" / row.filename).is_file()
    # The other org was not chosen: its order is still waiting, no ack written.
    assert len(list(Path(globex.export_path).glob("*.json"))) == 1
    assert list(Path(globex.ack_path).iterdir()) == []

    rejecting = orderflow_cli(env, "erp-sim", "--once", "--reject-ratio", "1")
    assert rejecting.returncode == 0, rejecting.stderr[-3000:]
    [row] = env.exports(keys[2])
    ack = json.loads((Path(globex.ack_path) / ack_name(row.id)).read_bytes())
    assert (ack["status"], ack["org_id"]) == ("FAILED", "globex")


def test_erp_sim_refuses_bad_ratios(orderflow_env: OrderflowEnv) -> None:
    done = orderflow_cli(orderflow_env, "erp-sim", "--once", "--reject-ratio", "1.5")
    assert done.returncode == 2 and "between 0 and 1" in done.stderr
    both = orderflow_cli(
        orderflow_env, "erp-sim", "--once", "--reject-ratio", "0.6", "--silent-ratio", "0.6"
    )
    assert both.returncode == 2
    assert "must not exceed 1" in both.stderr
    assert len(both.stderr.strip().splitlines()) == 1
