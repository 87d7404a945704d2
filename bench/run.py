"""Benchmark one model's daily pipeline on a simulated day of N predictions.

For each N (default 1M and 10M)::

    1. simulate one day of N predictions of `bench_model` (bench/models.yaml)
       into a fresh data folder under --out; generation is timed but is not
       part of the pipeline;
    2. the floor: pyarrow alone reads every prediction file of the day;
    3. extract, validate, measure and load over that day, each stage in its
       own subprocess, timed inside the stage function (interpreter start and
       imports excluded), with the peak RSS of that process;
    4. extract by format (--per-format, on by default): the same day simulated
       once per single format (parquet, jsonl, jsonl.gz), each in its own data
       folder --out/rows-<N>/<format>/, with the raw read and extract only;
    5. a table per N, the ratio (validate + measure + load) / raw read against
       the 3x target, the 2048 MB peak-RSS target and the 90 s whole-pipeline
       and 1400 MB extract peak-RSS targets on the 10M day, extract / raw read
       per format against the 3x target, and --out/results.json.

Every step runs as a child process (`python -m bench.run --child STEP`) with
MODELWATCH_DATA_DIR, MODELWATCH_CONFIG, MODELWATCH_WAREHOUSE_URL and
MLFLOW_TRACKING_URI set before it imports anything of modelwatch. Its peak RSS
is the `ru_maxrss` that `os.wait4` reports for exactly that child. The
children's stdout/stderr go to --out/logs-<N>/<step>.{out,err} (per-format
days: --out/logs-<N>/<format>/<step>.{out,err}); a failing step prints its
stderr tail and the bench exits non-zero.

Usage::

    python -m bench.run                          # 1M and 10M rows
    python -m bench.run --rows 1000000 --keep    # keep the data folder
    python -m bench.run --rows 1000000 --formats parquet
    python -m bench.run --rows 1000000 --no-per-format            # mixed day only
    python -m bench.run --rows 1000000 --reuse --stages measure   # re-time one stage
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = PROJECT_ROOT / "bench"
MODELS_FILE = BENCH_DIR / "models.yaml"
DEFAULT_OUT = BENCH_DIR / "out"
MODEL = "bench_model"
DAY = date(2026, 3, 4)  # a Wednesday: the simulator's weekday factor there is 1.00
SEED = 7
DEFAULT_ROWS = (1_000_000, 10_000_000)
DEFAULT_FORMATS = ("parquet", "jsonl.gz")
KNOWN_FORMATS = ("jsonl", "jsonl.gz", "parquet")
PIPELINE_STAGES = ("extract", "validate", "measure", "load")
STAGES = ("raw", *PIPELINE_STAGES)
TARGETED = ("validate", "measure", "load")
RATIO_TARGET = 3.0
RSS_TARGET_MB = 2048
RSS_TARGET_ROWS = 10_000_000  # the size-bound targets (RSS, whole-pipeline seconds) are judged from here up
# Extract by format: each format gets a day of its own, so a slow reader of one
# format is not averaged away by a fast one in the mixed day.
PER_FORMATS = ("parquet", "jsonl", "jsonl.gz")
PER_FORMAT_STAGES = ("raw", "extract")
FORMAT_RATIO_TARGET = 3.0  # extract / raw read of the same files
FORMAT_JUDGED = ("parquet", "jsonl.gz")  # the default --formats; jsonl is shown against the same target
PIPELINE_TARGET_SECONDS = 90.0  # extract + validate + measure + load on the 10M day
EXTRACT_RSS_TARGET_MB = 1400
RESULT_TAG = "BENCH_RESULT "
SIMULATED_MARKER = "simulated.json"
STDERR_TAIL_LINES = 40


# ============================================================== child processes
#
# Each child imports what its step needs, then times only the step itself and
# prints one line `BENCH_RESULT {json}` on stdout.


def _interval(spec: dict) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(spec["start"])
    return start, start + timedelta(days=1)


def _staged_folder(spec: dict) -> str:
    """The folder the extract step published for the bench day."""
    from modelwatch import staging
    from modelwatch.config import load_config

    start, end = _interval(spec)
    return staging.published(load_config().staging_url, MODEL, start, end).folder


def _with_warehouse(function, kwargs: dict, spec: dict) -> dict:
    """Pass the warehouse URL explicitly when the stage takes one (no Airflow lookup)."""
    import inspect

    if "warehouse_url" in inspect.signature(function).parameters:
        kwargs["warehouse_url"] = spec["warehouse_url"]
    return kwargs


def _preload(step: str) -> None:
    """Import what the step would import lazily, so that its timing excludes imports."""
    if step == "simulate":
        import mlflow  # noqa: F401
        import sklearn.ensemble  # noqa: F401

        from modelwatch import registry, simulation  # noqa: F401
        return
    if step == "raw":
        _warm_up_arrow()
        return
    import modelwatch.pipeline

    if step in TARGETED:
        import alembic.command
        import alembic.runtime.migration
        import alembic.script  # noqa: F401

        import modelwatch.warehouse.engine
        import modelwatch.warehouse.load
    if step == "validate":
        import great_expectations.data_context.types.base  # noqa: F401

        from modelwatch import validation

        validation._import_gx()
    if step == "measure":
        import modelwatch.drift
        import modelwatch.metrics  # noqa: F401


def _warm_up_arrow() -> None:
    """Read a tiny Parquet and JSON document once: the first read pays one-off set-up costs."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1, 2]}), sink)
    pq.read_table(pa.BufferReader(sink.getvalue()))
    pj.read_json(pa.BufferReader(b'{"x": 1}\n{"x": 2}\n'))


def _step_simulate(spec: dict) -> dict:
    from modelwatch import registry
    from modelwatch.config import load_config
    from modelwatch.simulation import simulate
    from modelwatch.simulation.training import REFERENCE_ROWS

    config = load_config()
    registry.configure()
    began = time.perf_counter()
    summary = simulate(
        config,
        start=date.fromisoformat(spec["day"]),
        days=1,
        requests_per_day=spec["rows"],
        seed=SEED,
        incidents=[],
        models=[MODEL],
        formats=spec["formats"],
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    generation = time.perf_counter() - began
    totals = summary.totals()[MODEL]
    return {
        "generation_seconds": generation,
        "requests": totals["requests"],
        "errors": totals["errors"],
        "labels": totals["labels"],
        "files": totals["files"],
        "reference_rows": REFERENCE_ROWS,
    }


def _prediction_files(spec: dict) -> list[Path]:
    folder = Path(spec["data_dir"]) / "logs" / MODEL / "predictions" / f"dt={spec['day']}"
    return sorted(p for p in folder.iterdir() if p.name.endswith((".parquet", ".jsonl", ".jsonl.gz")))


def _step_raw(spec: dict) -> dict:
    """The floor: pyarrow reads every prediction file of the day, one at a time."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    rows, by_format = 0, {}
    for path in _prediction_files(spec):
        fmt = path.name.split(".", 1)[1]
        began = time.perf_counter()
        if fmt == "parquet":
            table = pq.read_table(path)
        else:
            with pa.input_stream(str(path), compression="detect") as stream:
                table = pj.read_json(stream)
        entry = by_format.setdefault(fmt, {"files": 0, "rows": 0, "seconds": 0.0, "bytes": 0})
        entry["files"] += 1
        entry["rows"] += table.num_rows
        entry["seconds"] += time.perf_counter() - began
        entry["bytes"] += path.stat().st_size
        rows += table.num_rows
        del table
    return {"rows": rows, "by_format": by_format}


def _step_extract(spec: dict) -> dict:
    from modelwatch import pipeline

    start, end = _interval(spec)
    manifest = pipeline.extract(MODEL, start, end)
    keys = (
        "rows_read", "rows_valid", "rows_quarantined", "duplicates_dropped", "rows_outside_interval",
        "labels_read", "labels_kept", "labels_quarantined", "files_read", "folder",
    )
    return {k: manifest.get(k) for k in keys} | {
        "rows": manifest["rows_read"],
        "damaged_files": len(manifest.get("damaged_files") or []),
    }


def _staged_rows(folder: str) -> int:
    from modelwatch import extract, staging

    return int(extract.read_manifest(staging.StagedBatch(folder)).rows_valid)


def _step_validate(spec: dict) -> dict:
    from modelwatch import pipeline

    start, end = _interval(spec)
    folder = _staged_folder(spec)
    kwargs = _with_warehouse(pipeline.validate, {}, spec)
    outcome = pipeline.validate(MODEL, folder, start, end, **kwargs)
    return {
        "rows": _staged_rows(folder),
        "critical_failure": outcome.get("critical_failure"),
        "failed": outcome.get("failed"),
    }


def _step_measure(spec: dict) -> dict:
    from modelwatch import pipeline

    start, end = _interval(spec)
    folder = _staged_folder(spec)
    kwargs = _with_warehouse(pipeline.measure, {}, spec)
    outcome = pipeline.measure(MODEL, folder, start, end, **kwargs)
    return {
        "rows": _staged_rows(folder),
        "labels_joined": outcome.get("labels_joined"),
        "drift_detected": outcome.get("drift_detected"),
        "drifted_features": outcome.get("drifted_features"),
        "drift_summary": outcome.get("drift_summary"),
    }


def _step_load(spec: dict) -> dict:
    from modelwatch import pipeline

    start, end = _interval(spec)
    folder = _staged_folder(spec)
    kwargs = _with_warehouse(pipeline.load, {}, spec)
    outcome = pipeline.load(MODEL, folder, start, end, spec["run_id"], **kwargs)
    return {"rows": _staged_rows(folder), "status": outcome.get("status"), "tables": outcome.get("rows")}


_STEPS = {
    "simulate": _step_simulate,
    "raw": _step_raw,
    "extract": _step_extract,
    "validate": _step_validate,
    "measure": _step_measure,
    "load": _step_load,
}


def _rss_now_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child_main(step: str, spec: dict) -> int:
    import logging

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("great_expectations", "mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    began = time.perf_counter()
    _preload(step)
    imports = time.perf_counter() - began
    rss_before = _rss_now_mb()
    began = time.perf_counter()
    payload = _STEPS[step](spec)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "step": step,
        "seconds": seconds,
        "import_seconds": imports,
        "rss_after_imports_mb": rss_before,
        "self_peak_rss_mb": peak,
        **payload,
    }
    print(RESULT_TAG + json.dumps(result, default=str), flush=True)
    return 0


# ============================================================== the parent


class StepFailed(RuntimeError):
    pass


def _environment(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MODELWATCH_DATA_DIR": str(data_dir),
            "MODELWATCH_CONFIG": str(MODELS_FILE),
            "MODELWATCH_WAREHOUSE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
            "GX_ANALYTICS_ENABLED": "False",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "PYTHONPATH": os.pathsep.join(
                [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
    )
    return env


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no stderr)"
    return "\n".join(text[-lines:]) or "(empty stderr)"


def run_step(step: str, spec: dict, env: dict[str, str], cwd: Path, log_dir: Path) -> dict:
    """Run one step in a child process; return its result with wall time and peak RSS."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{step}.out", log_dir / f"{step}.err"
    command = [sys.executable, "-m", "bench.run", "--child", step, "--spec", json.dumps(spec)]
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except KeyboardInterrupt:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    peak_mb = usage.ru_maxrss / 1024  # KB on Linux
    if process.returncode != 0:
        raise StepFailed(
            f"step {step!r} exited with {process.returncode} after {wall:.1f} s "
            f"(peak RSS {peak_mb:,.0f} MB); stderr tail ({err_path}):\n{_tail(err_path)}"
        )
    lines = [
        line for line in out_path.read_text(errors="replace").splitlines() if line.startswith(RESULT_TAG)
    ]
    if not lines:
        raise StepFailed(f"step {step!r} printed no result; stderr tail ({err_path}):\n{_tail(err_path)}")
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result.update(
        wall_seconds=wall,
        peak_rss_mb=peak_mb,
        load_average_before=load_before,
        load_average_after=os.getloadavg()[0],
    )
    return result


def _say(text: str) -> None:
    print(text, flush=True)


def _rate(rows: int | None, seconds: float | None) -> float | None:
    if not rows or not seconds:
        return None
    return rows / seconds


def _clear(folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Empty `folder` (create it if missing), sparing the subfolders named in `keep`.

    The per-format days live inside the mixed day's data folder; `keep` lets a
    re-simulated mixed day spare per-format days that --reuse may still use.
    """
    if folder.exists():
        for child in folder.iterdir():
            if child.name in keep and child.is_dir():
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def _day_spec(rows: int, formats: list[str], data_dir: Path, env: dict[str, str], run_id: str) -> dict:
    """What every child of one simulated day needs to know (passed as --spec JSON)."""
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    return {
        "rows": rows,
        "day": DAY.isoformat(),
        "start": start.isoformat(),
        "formats": formats,
        "data_dir": str(data_dir),
        "warehouse_url": env["MODELWATCH_WAREHOUSE_URL"],
        "run_id": run_id,
    }


def _simulated_day(
    tag: str, spec: dict, env: dict[str, str], data_dir: Path, log_dir: Path, reuse: bool,
    keep: tuple[str, ...] = (),
) -> dict:
    """Simulate the day of `spec` into `data_dir`, or reuse an earlier one.

    Parameters
    ----------
    tag:
        Prefix of the progress lines, e.g. ``[1,000,000]``.
    spec, env:
        The children's spec and environment for this day.
    data_dir, log_dir:
        The day's data folder and the folder of its children's stdout/stderr.
    reuse:
        Reuse the day when `data_dir` holds one of the same formats (--reuse).
    keep:
        Subfolders of `data_dir` and `log_dir` to spare when the day is
        simulated afresh under --reuse (the per-format days of the mixed day).

    Returns
    -------
    The simulate step's result (as stored in `simulated.json`) with ``reused``.
    """
    marker = data_dir / SIMULATED_MARKER
    formats = spec["formats"]
    if reuse and marker.exists():
        simulated = json.loads(marker.read_text())
        if simulated.get("formats") != formats:
            raise SystemExit(f"--reuse: {data_dir} holds formats {simulated.get('formats')}, not {formats}")
        _say(f"{tag} reusing the simulated day in {data_dir}")
        return simulated | {"reused": True}
    # Without --reuse every earlier day under this folder is stale: wipe it all, as before.
    spared = keep if reuse else ()
    _clear(data_dir, spared)
    _clear(log_dir, spared)
    _say(f"{tag} simulating {DAY} ({','.join(formats)}) into {data_dir} ...")
    simulated = run_step("simulate", spec, env, data_dir, log_dir)
    simulated["formats"] = formats
    marker.write_text(json.dumps(simulated, indent=2))
    _say(
        f"{tag} simulated {simulated['requests']:,} predictions in {simulated['files']} files "
        f"in {simulated['generation_seconds']:.1f} s"
    )
    return simulated | {"reused": False}


def _run_steps(
    tag: str, steps: tuple[str, ...], spec: dict, env: dict[str, str], data_dir: Path, log_dir: Path
) -> dict[str, dict]:
    """Run `steps` in order, each in its own child; return their results by step."""
    results: dict[str, dict] = {}
    for step in steps:
        _say(f"{tag} {step} ...")
        result = run_step(step, spec, env, data_dir, log_dir)
        result["rows_per_second"] = _rate(result.get("rows"), result["seconds"])
        results[step] = result
        _say(
            f"{tag} {step}: {result['seconds']:.2f} s, peak RSS {result['peak_rss_mb']:,.0f} MB "
            f"(load average {result['load_average_before']:.2f} -> {result['load_average_after']:.2f})"
        )
    return results


def bench_rows(rows: int, args: argparse.Namespace) -> dict:
    """Simulate, read raw, run the chosen stages for one day of `rows` predictions.

    Then, with --per-format, the same day once per single format (raw read and
    extract only, see `bench_format`).
    """
    data_dir = (args.out / f"rows-{rows}").resolve()
    log_dir = (args.out / f"logs-{rows}").resolve()
    env = _environment(data_dir)
    spec = _day_spec(rows, list(args.formats), data_dir, env, f"bench__{rows}")
    record: dict[str, Any] = {
        "requested_rows": rows,
        "day": DAY.isoformat(),
        "formats": list(args.formats),
        "data_dir": str(data_dir),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "steps": {},
    }
    tag = f"[{rows:,}]"
    simulated = _simulated_day(tag, spec, env, data_dir, log_dir, args.reuse, keep=PER_FORMATS)
    record["simulate"] = simulated
    record["actual_rows"] = simulated["requests"]
    record["steps"] = _run_steps(tag, args.stages, spec, env, data_dir, log_dir)
    keep = args.keep or args.reuse
    if not keep:
        # Free the mixed day's disk before the per-format days are written (the 10M day is GBs).
        _clear(data_dir)

    per_format_steps = tuple(s for s in args.stages if s in PER_FORMAT_STAGES)
    if args.per_format and per_format_steps:
        record["per_format"] = {}
        for fmt in PER_FORMATS:
            record["per_format"][fmt] = bench_format(rows, fmt, per_format_steps, data_dir, log_dir, args)
    elif args.per_format:
        _say(f"{tag} extract by format skipped: --stages has neither raw nor extract")

    record["verdict"] = verdict(record)
    if not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        record["data_dir"] = None
    return record


def bench_format(
    rows: int, fmt: str, steps: tuple[str, ...], parent_dir: Path, parent_log_dir: Path,
    args: argparse.Namespace,
) -> dict:
    """Simulate the day of `rows` predictions in `fmt` alone; run `steps` (raw, extract) on it.

    Parameters
    ----------
    rows:
        Predictions asked of the simulator (same seed and day as the mixed day).
    fmt:
        The only log format of this day, one of `PER_FORMATS`.
    steps:
        The subset of `PER_FORMAT_STAGES` chosen with --stages.
    parent_dir, parent_log_dir:
        The mixed day's data and log folders; this day uses ``<fmt>/`` in each.
    args:
        The parsed command line (--reuse, --keep).

    Returns
    -------
    The per-format record: ``format``, ``data_dir`` (None once removed),
    ``simulate``, ``actual_rows`` and ``steps``.
    """
    data_dir, log_dir = parent_dir / fmt, parent_log_dir / fmt
    env = _environment(data_dir)
    spec = _day_spec(rows, [fmt], data_dir, env, f"bench__{rows}__{fmt}")
    tag = f"[{rows:,} {fmt}]"
    simulated = _simulated_day(tag, spec, env, data_dir, log_dir, args.reuse)
    sub: dict[str, Any] = {
        "format": fmt,
        "data_dir": str(data_dir),
        "simulate": simulated,
        "actual_rows": simulated["requests"],
        "steps": _run_steps(tag, steps, spec, env, data_dir, log_dir),
    }
    if not (args.keep or args.reuse):
        shutil.rmtree(data_dir, ignore_errors=True)
        sub["data_dir"] = None
    return sub


def verdict(record: dict) -> dict:
    """Judge one N's figures against the targets.

    Targets
    -------
    - ``(validate + measure + load) / raw read <= 3x`` on the mixed day;
    - peak RSS of every pipeline stage ``< 2048 MB`` (applies from 10M rows);
    - whole pipeline, ``extract + validate + measure + load < 90 s`` on the
      mixed day (applies from 10M rows);
    - extract peak RSS ``< 1400 MB``: the largest over the mixed day and the
      per-format days (applies from 10M rows);
    - per format, ``extract / raw read <= 3x`` of the same files; judged for
      `FORMAT_JUDGED`, the others are reported with ``judged: false``.

    A target whose ``*_applies`` is false is computed and shown, not judged.
    """
    steps = record["steps"]
    big_day = record["requested_rows"] >= RSS_TARGET_ROWS
    out: dict[str, Any] = {}
    if "raw" in steps and all(s in steps for s in TARGETED):
        targeted = sum(steps[s]["seconds"] for s in TARGETED)
        ratio = targeted / steps["raw"]["seconds"]
        out |= {
            "targeted_seconds": targeted,
            "ratio": ratio,
            "ratio_target": RATIO_TARGET,
            "ratio_met": ratio <= RATIO_TARGET,
        }
    pipeline = [steps[s]["peak_rss_mb"] for s in PIPELINE_STAGES if s in steps]
    if pipeline:
        peak = max(pipeline)
        out |= {
            "pipeline_peak_rss_mb": peak,
            "rss_target_mb": RSS_TARGET_MB,
            "rss_below_target": peak < RSS_TARGET_MB,
            "rss_target_applies": big_day,
        }
    if all(s in steps for s in PIPELINE_STAGES):
        seconds = sum(steps[s]["seconds"] for s in PIPELINE_STAGES)
        out |= {
            "pipeline_seconds": seconds,
            "pipeline_target_seconds": PIPELINE_TARGET_SECONDS,
            "pipeline_below_target": seconds < PIPELINE_TARGET_SECONDS,
            "pipeline_target_applies": big_day,
        }
    per_format = record.get("per_format") or {}
    # Extract must fit the budget whatever format a model logs in: judge the worst day.
    extracts = {"mixed": steps["extract"]} if "extract" in steps else {}
    extracts |= {fmt: sub["steps"]["extract"] for fmt, sub in per_format.items() if "extract" in sub["steps"]}
    if extracts:
        day, worst = max(extracts.items(), key=lambda item: item[1]["peak_rss_mb"])
        out |= {
            "extract_peak_rss_mb": worst["peak_rss_mb"],
            "extract_peak_rss_day": day,
            "extract_rss_target_mb": EXTRACT_RSS_TARGET_MB,
            "extract_rss_below_target": worst["peak_rss_mb"] < EXTRACT_RSS_TARGET_MB,
            "extract_rss_target_applies": big_day,
        }
    by_format = {}
    for fmt, sub in per_format.items():
        raw, extract = sub["steps"].get("raw"), sub["steps"].get("extract")
        if not (raw and extract and raw["seconds"] > 0):
            continue
        ratio = extract["seconds"] / raw["seconds"]
        by_format[fmt] = {
            "raw_seconds": raw["seconds"],
            "extract_seconds": extract["seconds"],
            "ratio": ratio,
            "ratio_target": FORMAT_RATIO_TARGET,
            "ratio_met": ratio <= FORMAT_RATIO_TARGET,
            "judged": fmt in FORMAT_JUDGED,
        }
    if by_format:
        out["extract_by_format"] = by_format
    return out


def _mark(met: bool, applies: bool = True, scope: str = "") -> str:
    """`met`/`MISSED`, and why a target was not judged."""
    return ("met" if met else "MISSED") + ("" if applies else scope)


def _format_block(record: dict) -> list[str]:
    """The "extract by format" block: one row per single-format day."""
    per_format = record.get("per_format") or {}
    if not per_format:
        return []
    judged = record["verdict"].get("extract_by_format", {})
    head = (
        f"{'format':<10} {'rows':>11} {'raw read s':>11} {'extract s':>10} {'extract/raw':>12} "
        f"{'extract rows/s':>15} {'extract RSS MB':>15}   target"
    )
    lines = ["", "extract by format (the same day simulated in one format each; raw read and extract only)",
             head, "-" * len(head)]
    for fmt, sub in per_format.items():
        raw, extract = sub["steps"].get("raw"), sub["steps"].get("extract")
        # Rows as extract counted them (rows/s is over these); the raw read's or the simulator's otherwise.
        rows = (extract or raw or {}).get("rows") or sub["actual_rows"]
        v = judged.get(fmt)
        target = f"<= {FORMAT_RATIO_TARGET:g}x " + ("-" if v is None else "PASS" if v["ratio_met"] else "FAIL")
        if v is not None and not v["judged"]:
            target += " (shown, not judged)"
        lines.append(
            f"{fmt:<10} {rows:>11,} "
            + (f"{raw['seconds']:>11.2f} " if raw else f"{'-':>11} ")
            + (f"{extract['seconds']:>10.2f} " if extract else f"{'-':>10} ")
            + (f"{v['ratio']:>11.1f}x " if v else f"{'-':>12} ")
            + (f"{extract['rows_per_second']:>15,.0f} " if extract and extract.get("rows_per_second")
               else f"{'-':>15} ")
            + (f"{extract['peak_rss_mb']:>15,.0f}" if extract else f"{'-':>15}")
            + f"   {target}"
        )
    return lines


def table(record: dict) -> str:
    steps, simulated = record["steps"], record["simulate"]
    actual = record["actual_rows"]
    if "raw" in steps:
        files = f"{sum(e['files'] for e in steps['raw']['by_format'].values())} prediction files"
    else:
        files = f"{simulated['files']} log files"
    lines = [
        f"bench_model, {record['day']}: {actual:,} predictions "
        f"(asked {record['requested_rows']:,}; the simulator varies volume by weekday), "
        f"{files} ({','.join(record['formats'])}), {simulated['labels']:,} same-day labels",
        f"generation (not part of the pipeline): {simulated['generation_seconds']:.1f} s"
        + (" (reused)" if simulated.get("reused") else ""),
        "",
        f"{'stage':<10} {'seconds':>9} {'rows/s':>12} {'peak RSS MB':>12}   {'child wall s':>12}",
        "-" * 62,
    ]
    names = {"raw": "raw read"}
    for step in STAGES:
        if step not in steps:
            continue
        s = steps[step]
        rate = f"{s['rows_per_second']:,.0f}" if s.get("rows_per_second") else "-"
        lines.append(
            f"{names.get(step, step):<10} {s['seconds']:>9.2f} {rate:>12} {s['peak_rss_mb']:>12,.0f}"
            f"   {s['wall_seconds']:>12.1f}"
        )
    v = record["verdict"]
    scope = f" (not judged: the target is for the {RSS_TARGET_ROWS:,}-row day)"
    lines.append("-" * 62)
    if "ratio" in v:
        lines.append(f"{'v+m+l':<10} {v['targeted_seconds']:>9.2f}")
        lines.append(
            f"(validate + measure + load) / raw read = {v['ratio']:.1f}x; target <= {RATIO_TARGET:g}x: "
            + _mark(v["ratio_met"])
        )
    if "pipeline_peak_rss_mb" in v:
        lines.append(
            f"peak RSS of the pipeline stages: {v['pipeline_peak_rss_mb']:,.0f} MB; "
            f"target < {RSS_TARGET_MB} MB: " + _mark(v["rss_below_target"], v["rss_target_applies"], scope)
        )
    if "pipeline_seconds" in v:
        lines.append(
            f"whole pipeline (extract + validate + measure + load): {v['pipeline_seconds']:.2f} s; "
            f"target < {PIPELINE_TARGET_SECONDS:g} s: "
            + _mark(v["pipeline_below_target"], v["pipeline_target_applies"], scope)
        )
    if "extract_peak_rss_mb" in v:
        lines.append(
            f"extract peak RSS (largest, on the {v['extract_peak_rss_day']} day): {v['extract_peak_rss_mb']:,.0f} MB; "
            f"target < {EXTRACT_RSS_TARGET_MB} MB: "
            + _mark(v["extract_rss_below_target"], v["extract_rss_target_applies"], scope)
        )
    if "raw" in steps:
        parts = [
            f"{fmt} {e['files']} files {e['rows']:,} rows {e['bytes'] / 2**20:,.0f} MB {e['seconds']:.2f} s"
            for fmt, e in steps["raw"]["by_format"].items()
        ]
        lines.append("raw read by format: " + "; ".join(parts))
    lines += _format_block(record)
    return "\n".join(lines)


def _machine() -> dict:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = None
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(memory, 1) if memory else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _save(out: Path, records: list[dict]) -> Path:
    path = out / "results.json"
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    runs = previous.get("runs", {}) if isinstance(previous.get("runs"), dict) else {}
    for record in records:
        runs[str(record["requested_rows"])] = record
    payload = {
        "machine": _machine(),
        "note": "2-core machine shared with concurrent test runs: timings are noisy",
        "runs": runs,
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in chosen if f not in KNOWN_FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(KNOWN_FORMATS)} (got {text!r})"
        )
    return chosen


def _stages(text: str) -> tuple[str, ...]:
    chosen = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(chosen - set(STAGES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(STAGES)} (got {text!r})"
        )
    return tuple(s for s in STAGES if s in chosen)


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1000:
        raise argparse.ArgumentTypeError(f"expected at least 1000 rows (got {text})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=_positive, nargs="+", default=list(DEFAULT_ROWS), metavar="N",
                        help="predictions per simulated day, one run each (default: 1000000 10000000)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT.relative_to(PROJECT_ROOT)})")
    parser.add_argument("--keep", action="store_true", help="keep each data folder (logs, staging, warehouse)")
    parser.add_argument("--formats", type=_formats, default=DEFAULT_FORMATS, metavar="F1,F2",
                        help=f"log formats the simulator rotates through (default {','.join(DEFAULT_FORMATS)}; "
                             "e.g. parquet for Parquet only)")
    parser.add_argument("--stages", type=_stages, default=STAGES, metavar="S1,S2",
                        help=f"steps to run, in order (default {','.join(STAGES)}); later stages read "
                             "what earlier ones staged, so a subset needs --reuse of a kept folder")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the simulated day (and staged files) of an earlier --keep run; implies --keep")
    parser.add_argument("--per-format", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also simulate the same day once per single format ({','.join(PER_FORMATS)}) "
                             "into --out/rows-N/<format>/ and run only raw and extract (those of --stages) "
                             "on each, for the 'extract by format' block (default on; --no-per-format skips it)")
    parser.add_argument("--child", choices=sorted(_STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child_main(args.child, json.loads(args.spec))
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    _say(f"machine: {_machine()}; load average {os.getloadavg()[0]:.2f} (shared, noisy)")
    records, failed = [], None
    for rows in args.rows:
        try:
            records.append(bench_rows(rows, args))
        except StepFailed as exc:
            failed = f"[{rows:,}] {exc}"
            break
        _say("")
        _say(table(records[-1]))
        _say("")
    path = _save(args.out, records)
    _say(f"results: {path}")
    if failed:
        print(f"bench failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
