"""Write inference-log files in the contract's three formats, for tests."""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from modelwatch.config import ModelConfig, parse_config


def model_spec(**overrides) -> dict:
    """The fields of a small binary classifier; `overrides` replace them."""
    spec = {
        "name": "credit_risk",
        "task": "binary_classification",
        "context": ["channel"],
        "segments": ["country", "channel"],
        "features": [
            {"name": "income", "type": "numeric", "min": 0},
            {"name": "country", "type": "categorical", "allowed_values": ["DE", "FR"]},
            {"name": "has_card", "type": "boolean"},
        ],
    }
    return spec | overrides


def make_model(root: str, **overrides) -> ModelConfig:
    """The small binary classifier of `model_spec`, its logs under `root`."""
    spec = model_spec(**({"log_root": root, "label_maturity_intervals": 2} | overrides))
    return parse_config({"models": [spec]}).models[0]


def prediction(request_id: str, timestamp: str = "2026-03-02T10:00:00Z", **overrides) -> dict:
    record = {
        "request_id": request_id,
        "timestamp": timestamp,
        "model_name": "credit_risk",
        "model_version": "3",
        "features": {"income": 52000.5, "country": "DE", "has_card": True},
        "prediction": 1,
        "score": 0.83,
        "latency_ms": 12.4,
        "status": "ok",
        "context": {"channel": "web"},
    }
    record.update(overrides)
    return record


def label(request_id: str, value=1, timestamp: str = "2026-03-02T18:00:00Z") -> dict:
    return {"request_id": request_id, "label": value, "label_timestamp": timestamp}


def partition(root: str, kind: str, day: str, model: str = "credit_risk") -> str:
    return f"{root.rstrip('/')}/{model}/{kind}/dt={day}"


def write_lines(url: str, lines: list[str]) -> None:
    """Write raw text lines (may be invalid JSON) as .jsonl or .jsonl.gz by suffix."""
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    if url.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with fs.open(path, "wb") as handle:
        handle.write(data)


def write_jsonl(url: str, records: list[dict]) -> None:
    write_lines(url, [json.dumps(r) for r in records])


def _timestamp(value):
    if isinstance(value, str) and value.endswith("Z"):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def write_parquet(url: str, records: list[dict]) -> None:
    """Parquet as the contract types it: timestamps with zone, features as a struct."""
    names = list(dict.fromkeys(k for r in records for k in r))
    rows = [
        {k: _timestamp(r.get(k)) if k in ("timestamp", "label_timestamp") else r.get(k) for k in names}
        for r in records
    ]
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as handle:
        pq.write_table(pa.Table.from_pylist(rows), handle)


def write_records(url: str, records: list[dict]) -> None:
    if url.endswith(".parquet"):
        write_parquet(url, records)
    else:
        write_lines(url, [json.dumps(r) for r in records])


def arrow_table(records: list[dict]) -> pa.Table:
    """The Arrow table `write_parquet` writes for `records`, to be altered before `write_table`."""
    names = list(dict.fromkeys(k for r in records for k in r))
    return pa.Table.from_pylist(
        [
            {k: _timestamp(r.get(k)) if k in ("timestamp", "label_timestamp") else r.get(k) for k in names}
            for r in records
        ]
    )


def write_table(url: str, table: pa.Table) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as handle:
        pq.write_table(table, handle)


def write_bytes(url: str, data: bytes) -> None:
    """Write a file byte for byte (e.g. lines that are not UTF-8)."""
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as handle:
        handle.write(data)
