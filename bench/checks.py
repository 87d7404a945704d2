"""Benchmark check + decide on a model with a year of history, and measure false alarms on clean intervals.

1. Fill an SQLite warehouse with 365 clean daily intervals of a binary
   classifier (`credit_risk` of the shipped models file, without thresholds,
   so only the history checks judge): its quality metrics computed by
   `modelwatch.metrics.quality_metrics` from about 1,000 labeled predictions
   a day (accuracy about 0.97), and plausible system KPIs (a few per cent of
   day-to-day variation), loaded with `warehouse.load.load_run`.
2. Judge every interval after the first 30 in order with `pipeline.check`
   and `pipeline.decide` and the shipped defaults (control limits,
   IsolationForest, streaks), and count the intervals whose decision is not
   `healthy`: the false-alarm rate on clean intervals.
3. Time `check` + `decide` of interval 366, with the 365 before it stored
   (warm: imports and the registry's first connection excluded, reported
   apart); target under 2 s.

Usage::

    python -m bench.checks                 # 365 intervals, seed 3
    python -m bench.checks --seed 4 --intervals 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL = "credit_risk"
START = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
LABELS = 1000
REQUESTS = 50_000
ACCURACY = 0.97
TARGET_S = 2.0
WARM_UP = 30


def _prepare(folder: Path) -> Path:
    """A models file of the shipped credit_risk without thresholds, in `folder`; the environment pointed there."""
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "include" / "config" / "models.yaml").read_text())
    raw["models"] = [model | {"thresholds": {}} for model in raw["models"] if model["name"] == MODEL]
    config = folder / "models.yaml"
    config.write_text(yaml.safe_dump(raw))
    os.environ.update({
        "MODELWATCH_CONFIG": str(config),
        "MODELWATCH_DATA_DIR": str(folder / "data"),
        "MODELWATCH_WAREHOUSE_URL": f"sqlite:///{folder / 'warehouse.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
    })
    return config


def _quality(model, rng, start: datetime):
    """Quality metrics of one interval from about `LABELS` labeled predictions of accuracy `ACCURACY`."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    from modelwatch import metrics

    count = rng.poisson(LABELS)
    positive = rng.random(count) < 0.3
    separation = stats.norm.ppf(ACCURACY)
    score = 1 / (1 + np.exp(-(np.where(positive, separation, -separation) + rng.standard_normal(count))))
    labeled = pd.DataFrame({
        "model_version": "1", "status": "ok",
        "prediction": np.where(score >= 0.5, "1", "0"), "score": score,
        "label": np.where(positive, "1", "0"),
        **{f"feature__{key}": "x" for key in ("country",)},
        **{f"context__{key}": "x" for key in model.context},
    })
    frame = metrics.quality_metrics(labeled, model, start, start + DAY).assign(model_name=model.name)
    return frame[(frame["model_version"] == "all") & (frame["segment"] == "all")]


def _system(rng, start: datetime):
    """System KPIs of one interval, overall and for the one serving version."""
    import numpy as np
    import pandas as pd

    requests = int(REQUESTS * np.exp(rng.normal(0, 0.04)))
    p95 = 120 * np.exp(rng.normal(0, 0.04))
    values = {
        "request_count": requests,
        "error_rate": rng.binomial(requests, 0.02 * np.exp(rng.normal(0, 0.1))) / requests,
        "latency_p95_ms": p95,
        "latency_p99_ms": p95 * 2.1 * np.exp(rng.normal(0, 0.04)),
    }
    rows = [
        {"model_version": version, "segment": "all", "metric": metric, "kind": "system", "value": float(value),
         "sample_size": requests, "label_coverage": None}
        for metric, value in values.items() for version in ("all", "1")
        if version == "all" or metric == "request_count"
    ]
    return pd.DataFrame(rows).assign(model_name=MODEL, interval_start=start, interval_end=start + DAY), requests


def fill(model, intervals: int, seed: int) -> None:
    """Load `intervals` clean daily intervals into the warehouse."""
    import numpy as np
    import pandas as pd

    from modelwatch import pipeline
    from modelwatch.warehouse import load

    rng = np.random.default_rng(seed)
    engine = pipeline.warehouse_engine()
    for day in range(intervals):
        start = START + day * DAY
        quality = _quality(model, rng, start).assign(labels_as_of=start + 3 * DAY)
        system, requests = _system(rng, start)
        drift = pd.DataFrame({
            "feature": [f.name for f in model.features], "method": "psi", "statistic": 0.01, "p_value": 0.5,
            "adjusted_p_value": 0.9, "threshold": 0.2, "drifted": False, "sample_size": requests,
            "reference_size": requests,
        })
        load.load_run(engine, load.RunBundle(
            model_name=model.name, interval_start=start, interval_end=start + DAY, run_id=f"bench-{day}",
            run={"rows_read": requests, "rows_valid": requests, "rows_quarantined": 0, "labels_read": LABELS},
            model_metrics=pd.concat([quality, system], ignore_index=True), labels_as_of=start + 3 * DAY,
            feature_drift=drift,
        ))


def judge(model, start: datetime) -> tuple[dict, float, float]:
    """Check and decide one interval; returns the decision and the seconds each took."""
    from modelwatch import pipeline

    loaded = {"critical_failure": False, "failed_critical": [], "drifted_features": [], "recomputed_intervals": []}
    run_id = f"bench-{start.date()}"
    began = time.perf_counter()
    checked = pipeline.check(model.name, start, start + DAY, run_id, loaded)
    checked_at = time.perf_counter()
    decided = pipeline.decide(model.name, start, start + DAY, run_id, loaded, checked)
    return decided, checked_at - began, time.perf_counter() - checked_at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=365, help="intervals of history (default 365)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-checks-") as folder:
        config = _prepare(Path(folder))
        import logging

        logging.disable(logging.WARNING)  # every judged interval logs its checks
        from modelwatch.config import load_config

        model = load_config(config).model(MODEL)
        began = time.perf_counter()
        fill(model, args.intervals + 1, args.seed)
        print(f"loaded {args.intervals + 1} intervals in {time.perf_counter() - began:.1f} s", flush=True)

        first = time.perf_counter()
        judge(model, START + WARM_UP * DAY)
        cold = time.perf_counter() - first
        alarms = []
        for day in range(WARM_UP + 1, args.intervals):
            decided, _, _ = judge(model, START + day * DAY)
            if decided["action"] != "healthy":
                alarms.append(f"  {(START + day * DAY).date()}: {decided['action']}: {decided['reason'][:160]}")
        clean = args.intervals - WARM_UP - 1
        print(f"false alarms: {len(alarms)} of {clean} clean intervals ({len(alarms) / clean:.2%}) "
              "with the shipped defaults")
        print("\n".join(alarms))
        decided, check_s, decide_s = judge(model, START + args.intervals * DAY)
        total = check_s + decide_s
        print(f"check + decide of interval {args.intervals + 1} with {args.intervals} stored before it: "
              f"{total:.2f} s (check {check_s:.2f} s, decide {decide_s:.2f} s; target < {TARGET_S:.0f} s: "
              f"{'met' if total < TARGET_S else 'MISSED'}); the first call, with imports: {cold:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
