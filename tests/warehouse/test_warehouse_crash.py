"""A load killed with SIGKILL inside its transaction leaves nothing of itself and no lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

from modelwatch.warehouse.load import load_run

from .builders import JAN, bundle, metrics, warehouse_state

TESTS = Path(__file__).resolve().parents[1]

# Loads one bundle, stopping for good right after its first rows are inserted, inside the transaction.
LOADER = textwrap.dedent(
    """
    import sys, time
    from modelwatch.warehouse import load
    from modelwatch.warehouse.engine import get_engine
    from warehouse.builders import JAN, bundle, metrics

    insert = load._insert

    def insert_then_hang(connection, rows):
        insert(connection, rows)
        if rows.rows:
            print("inside the transaction", flush=True)
            time.sleep(600)

    load._insert = insert_then_hang
    load.load_run(get_engine(sys.argv[1]), bundle("credit_risk", JAN[1], model_metrics=metrics(JAN[1], {"f1": 0.1})))
    """
)


def test_a_load_killed_inside_its_transaction_leaves_the_warehouse_as_it_was(warehouse_engine, warehouse_url):
    load_run(warehouse_engine, bundle("credit_risk", JAN[0], model_metrics=metrics(JAN[0], {"f1": 0.9})))
    before = warehouse_state(warehouse_engine)
    loader = subprocess.Popen(
        [sys.executable, "-c", LOADER, warehouse_url], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    try:
        assert loader.stdout.readline().strip() == "inside the transaction"
        os.kill(loader.pid, signal.SIGKILL)
        assert loader.wait(timeout=30) == -signal.SIGKILL
    finally:
        if loader.poll() is None:
            loader.kill()
            loader.wait(timeout=30)

    after = warehouse_state(warehouse_engine)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(frame, after[name], obj=name)
    # The dead load's lock is gone: the next load of the model goes through at once.
    started = time.monotonic()
    load_run(warehouse_engine, bundle("credit_risk", JAN[1], model_metrics=metrics(JAN[1], {"f1": 0.1})))
    assert time.monotonic() - started < 10
    assert len(warehouse_state(warehouse_engine)["monitoring_runs"]) == 2
