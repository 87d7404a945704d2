"""`modelwatch simulate`: write realistic inference logs and labels for the configured models.

The command trains (or reuses) a real model per configured model in the MLflow
registry, serves generated traffic with it and writes predictions and feedback
in the log contract's form, with the scheduled incidents. Its Python API is
`modelwatch.simulation.simulate`; docs/simulator.md describes both.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from modelwatch.simulation import (
    DEFAULT_SCHEDULE,
    FORMATS,
    Incident,
    IncidentError,
    load_incidents,
    parse_incident,
    simulate,
)

DEFAULT_DAYS = 14
DEFAULT_REQUESTS = 20_000
DEFAULT_SEED = 7
DEFAULT_BLOCK_ROWS = 250_000


def _incident(spec: str) -> Incident:
    try:
        return parse_incident(spec)
    except IncidentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


class _NameList(argparse.Action):
    """Collect names given space- or comma-separated, over repeated uses of the option."""

    def __call__(self, parser, namespace, values, option_string=None):
        names = list(getattr(namespace, self.dest) or [])
        names += [name for value in values for name in _names(value)]
        setattr(namespace, self.dest, names)


def _formats(text: str) -> list[str]:
    chosen = _names(text)
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(FORMATS)} (got {text!r})"
        )
    return chosen


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1 (got {text})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` options to a (sub)parser."""
    parser.add_argument(
        "--days",
        type=_positive,
        default=DEFAULT_DAYS,
        help=f"number of days to simulate (default {DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="first simulated UTC day (default: the last simulated day is yesterday)",
    )
    parser.add_argument(
        "--requests-per-day",
        type=int,
        default=DEFAULT_REQUESTS,
        metavar="N",
        help=f"average requests per model and day (default {DEFAULT_REQUESTS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed; same seed, same files (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--models",
        action=_NameList,
        nargs="+",
        default=None,
        metavar="NAME",
        help="simulate only these configured models, space- or comma-separated (default: all)",
    )
    parser.add_argument(
        "--incident",
        type=_incident,
        action="append",
        default=[],
        metavar="SPEC",
        help="add an incident, e.g. sudden_drift@5:credit_risk,feature=income,factor=1.8 "
        "(repeatable; replaces the default schedule)",
    )
    parser.add_argument(
        "--incidents",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML file of incidents (replaces the default schedule)",
    )
    parser.add_argument(
        "--no-incidents", action="store_true", help="write clean logs, without the default schedule"
    )
    parser.add_argument(
        "--formats",
        type=_formats,
        default=list(FORMATS),
        metavar="F1,F2",
        help=f"file formats to rotate through (default {','.join(FORMATS)})",
    )
    parser.add_argument(
        "--root",
        default=None,
        metavar="URL",
        help="log root for every model, any fsspec URL (default: each model's log_root)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="models file (default: MODELWATCH_CONFIG or the shipped example)",
    )
    parser.add_argument(
        "--block-rows",
        type=int,
        default=DEFAULT_BLOCK_ROWS,
        metavar="N",
        help=f"requests generated and written per file (default {DEFAULT_BLOCK_ROWS})",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-day progress lines")


def default_start(days: int, today: date | None = None) -> date:
    """The first day of a period of `days` days that ends yesterday (UTC)."""
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=days)


def chosen_incidents(args: argparse.Namespace) -> list[Incident]:
    """The incidents the options ask for: the default schedule unless told otherwise."""
    explicit = list(args.incident)
    if args.incidents is not None:
        explicit = load_incidents(args.incidents) + explicit
    if args.no_incidents:
        if explicit:
            raise IncidentError("--no-incidents cannot be combined with --incident or --incidents")
        return []
    return explicit if explicit or args.incidents is not None else list(DEFAULT_SCHEDULE)


def _check_models(incidents: list[Incident], configured: set[str]) -> None:
    """Incidents given on the command line must name configured models."""
    unknown = sorted(
        {i.model for i in incidents if i.model is not None and i.model not in configured}
    )
    if unknown:
        raise IncidentError(
            f"incidents name unknown model(s) {unknown}; configured: {sorted(configured)}"
        )


def run(args: argparse.Namespace) -> int:
    """Run `modelwatch simulate`; prints a summary table and returns the exit code."""
    from modelwatch import registry
    from modelwatch.config import load_config

    try:
        config = load_config(args.config)
        incidents = chosen_incidents(args)
        if args.incident or args.incidents is not None:
            _check_models(incidents, {m.name for m in config.models})
        uri = registry.configure()
        progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
        summary = simulate(
            config,
            start=args.start or default_start(args.days),
            days=args.days,
            requests_per_day=args.requests_per_day,
            seed=args.seed,
            incidents=incidents,
            models=args.models,
            formats=args.formats,
            root=args.root,
            block_rows=args.block_rows,
            progress=progress,
        )
    except ValueError as exc:  # ConfigError and IncidentError are ValueErrors
        print(f"modelwatch simulate: error: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    print(f"model registry: {uri}")
    return 0
