"""The production simulator: realistic inference logs, late labels and scheduled incidents.

`simulate` trains a real scikit-learn pipeline per configured model, registers
it in MLflow as the `champion`, serves generated traffic with it and writes
predictions and feedback exactly in the form of the log contract. See
docs/simulator.md.
"""

from modelwatch.simulation.engine import DaySummary, ModelSummary, SimulationSummary, simulate
from modelwatch.simulation.formats import FORMATS
from modelwatch.simulation.incidents import (
    DEFAULT_SCHEDULE,
    KINDS,
    Incident,
    IncidentError,
    load_incidents,
    parse_incident,
)

__all__ = [
    "DEFAULT_SCHEDULE",
    "FORMATS",
    "KINDS",
    "DaySummary",
    "Incident",
    "IncidentError",
    "ModelSummary",
    "SimulationSummary",
    "load_incidents",
    "parse_incident",
    "simulate",
]
