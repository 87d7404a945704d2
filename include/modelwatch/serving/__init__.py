"""A reference model server: the registry's `champion` over HTTP, logging in the log contract's form.

`python -m modelwatch serve <model>` (docs/serving.md). The parts:

- `inputs`: the `POST /predict` body, checked against the model's configured features;
- `champion`: the served version, following the `champion` alias and swapped atomically;
- `logfiles`: prediction records as JSONL, partitioned by day, rotated and published whole;
- `telemetry`: the Prometheus metrics;
- `server`: the FastAPI app, the server object that ties the parts together, and the command.
"""
