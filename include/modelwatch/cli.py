"""`python -m modelwatch …`: simulate production, run intervals, serve a model, export its history."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from modelwatch.config import ConfigError


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD (got {text!r})") from None


def _run_extract(args: argparse.Namespace) -> int:
    from modelwatch import pipeline

    start = datetime.combine(args.day, datetime.min.time(), tzinfo=UTC)
    manifest = pipeline.extract(args.model, start, start + timedelta(days=1))
    print(json.dumps(manifest, indent=2))
    return 0


def _run_simulate(args: argparse.Namespace) -> int:
    from modelwatch import simulator

    return simulator.run(args)


def _run_serve(args: argparse.Namespace) -> int:
    from modelwatch.serving import command

    return command.run(args)


def _run_demo(args: argparse.Namespace) -> int:
    from modelwatch import demo

    return demo.run(days=args.days, requests_per_day=args.requests_per_day, seed=args.seed, loop=args.loop)


def _run_paths(args: argparse.Namespace) -> int:
    from sqlalchemy import make_url

    import modelwatch
    from modelwatch import settings
    from modelwatch.config import load_config
    from modelwatch.warehouse.engine import warehouse_url

    config = load_config()
    rows = {
        "code": Path(modelwatch.__file__).parent,
        "models file": settings.config_path(),
        "data folder": settings.data_dir(),
        "staging": settings.resolve_root(config.staging_url),
        "warehouse": make_url(warehouse_url()).render_as_string(hide_password=True),
        "model registry": settings.default_mlflow_uri(),
    }
    for name, value in rows.items():
        print(f"{name:<15} {value}")
    return 0


def _run_export_tensorboard(args: argparse.Namespace) -> int:
    from modelwatch import tensorboard_export
    from modelwatch.warehouse.engine import WarehouseUnavailable

    try:
        export = tensorboard_export.export_model(args.model, out_dir=args.out, since=args.since, until=args.until)
    except (tensorboard_export.ExportError, WarehouseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(export.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelwatch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)

    from modelwatch import simulator

    simulate = commands.add_parser("simulate", help="write simulated production logs and register models")
    simulator.add_arguments(simulate)
    simulate.set_defaults(handler=_run_simulate)

    from modelwatch.serving import command as serving

    serve = commands.add_parser("serve", help="serve a model's champion over HTTP, logging every request")
    serving.add_arguments(serve)
    serve.set_defaults(handler=_run_serve)

    stage = commands.add_parser("extract", help="stage one day of a model's logs and print the manifest")
    stage.add_argument("model", help="model name from the models file")
    stage.add_argument("day", type=_day, help="UTC day, YYYY-MM-DD")
    stage.set_defaults(handler=_run_extract)

    demo = commands.add_parser("demo", help="simulate, run every monitor DAG over the days, report, then close "
                                             "the loop with the reference model server")
    demo.add_argument("--days", type=int, default=14)
    demo.add_argument("--requests-per-day", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--no-loop", dest="loop", action="store_false",
                      help="skip the last part (serve credit_risk, deploy a worse version, let the DAG roll it "
                           "back); the worse version then goes live in the simulated days instead")
    demo.set_defaults(handler=_run_demo)

    paths = commands.add_parser("paths", help="print where the code, data, warehouse and registry are")
    paths.set_defaults(handler=_run_paths)

    tensorboard = commands.add_parser(
        "export-tensorboard", help="write a model's metric history as TensorBoard runs, one per model version"
    )
    tensorboard.add_argument("model", help="model name as stored in the warehouse")
    tensorboard.add_argument("--out", type=Path, help="TensorBoard log folder (default: <data folder>/tensorboard)")
    tensorboard.add_argument("--since", type=_day, help="first UTC day to export, YYYY-MM-DD (default: all)")
    tensorboard.add_argument("--until", type=_day, help="last UTC day to export, YYYY-MM-DD (default: all)")
    tensorboard.set_defaults(handler=_run_export_tensorboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
