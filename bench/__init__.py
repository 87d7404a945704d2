"""ModelWatch benchmarks (never timed tests): `python -m bench.run`, see bench/README.md."""
