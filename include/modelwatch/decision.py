"""The decision: one plain function from an interval's checks and run facts to what happens next.

The rules, first match wins (docs/checks.md has the table):

1. ``halt``: a critical data-quality failure. No model decision is taken on
   bad data ("data problem").
2. ``rollback``: quality breached while a version that went live within the
   rollback window serves, and the version that served before it did better
   on the same intervals. (When the logs still show another version than the
   champion an earlier decision set, the quality judged is not the
   champion's: ``alert``, "environment problem", instead of acting again.)
3. ``retrain``: quality breached or anomalous, with drift, and enough new
   labels since the champion was trained.
4. ``alert``: quality breached without the conditions for 2 or 3 ("model
   problem", saying what is missing); system KPIs breached or anomalous
   ("environment problem"); data quality below its thresholds ("data
   problem"); drift alone ("input drift").
5. ``healthy``: no check alerts.

Only alerting checks count (breached for their `consecutive` intervals in a
row); checks without a verdict (too little history or too few labels) never
drive a decision. Nothing here touches Airflow, the registry or the warehouse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelwatch import catalogue
from modelwatch.checks import CheckRow

Action = Literal["halt", "rollback", "retrain", "alert", "healthy"]
ACTIONS: tuple[Action, ...] = ("halt", "rollback", "retrain", "alert", "healthy")

DATA_PROBLEM = "data problem"
ENVIRONMENT_PROBLEM = "environment problem"
MODEL_PROBLEM = "model problem"
INPUT_DRIFT = "input drift"


@dataclass(frozen=True)
class VersionSwitch:
    """A version that went live recently, and what served before it.

    Attributes
    ----------
    version, previous : str
        The version serving now and the one it replaced (None: none known).
    live_since : datetime
        Start of the first interval it served.
    intervals_live : int
        Intervals it has served, this one included.
    previous_metric, current_metric : float or None
        Both versions' value of the compared metric on the same labeled
        requests (replayed from the registry), or each version's own recent
        value where the registry cannot replay them.
    metric : str
        The compared metric.
    same_requests : bool
        Whether the two values come from the same requests.
    """

    version: str
    previous: str | None
    live_since: datetime
    intervals_live: int
    metric: str
    previous_metric: float | None = None
    current_metric: float | None = None
    same_requests: bool = False

    def previous_did_better(self) -> bool:
        if self.previous is None or self.previous_metric is None or self.current_metric is None:
            return False
        return catalogue.metric(self.metric).worse(self.current_metric, self.previous_metric) > 0


@dataclass(frozen=True)
class RunFacts:
    """What the decision needs besides the checks.

    Attributes
    ----------
    critical_failure : bool
        Validation found a critical data-quality failure in this interval.
    failed_critical : list of str
        The critical expectations that failed.
    drifted_features : list of str
        Features (and the prediction) flagged as drifted in this interval.
    champion : str or None
        The registry's `champion`; None for a model monitored from its logs only.
    new_labels : int or None
        Labeled predictions since the champion was trained (or last retrained);
        None when not counted (no quality check alerts).
    min_new_labels : int
        `retrain.min_new_labels`.
    retrain_enabled, rollback_enabled : bool
        The model's policy.
    rollback_window : int
        `rollback.window_intervals`.
    switch : VersionSwitch or None
        The most recent version change, if any is known.
    served_version : str or None
        The version that answered most of the interval's requests.
    champion_set_at : datetime or None
        When a recorded decision of this model made the current champion
        (promotion or rollback); None when none did.
    """

    critical_failure: bool = False
    failed_critical: list[str] = field(default_factory=list)
    drifted_features: list[str] = field(default_factory=list)
    champion: str | None = None
    new_labels: int | None = None
    min_new_labels: int = 0
    retrain_enabled: bool = True
    rollback_enabled: bool = True
    rollback_window: int = 3
    switch: VersionSwitch | None = None
    served_version: str | None = None
    champion_set_at: datetime | None = None

    def serving_lags(self) -> bool:
        """Whether the logs still show another version than the champion an earlier decision set."""
        return (
            self.champion_set_at is not None
            and self.served_version is not None
            and self.champion is not None
            and self.served_version != self.champion
        )


@dataclass(frozen=True)
class Decision:
    """What to do about an interval, and why.

    Attributes
    ----------
    action : {"halt", "rollback", "retrain", "alert", "healthy"}
    problem : str
        ``data problem``, ``environment problem``, ``model problem``,
        ``input drift`` or ``none``.
    reason : str
        Sentences a person on call can act on, naming the checks that drove it.
    checks : list of str
        The alerting checks behind the decision (``check_name@interval``).
    severity : {"critical", "warning"} or None
        The highest severity among them (None when healthy).
    """

    action: Action
    problem: str
    reason: str
    checks: list[str] = field(default_factory=list)
    severity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(rows: list[CheckRow], facts: RunFacts) -> Decision:
    """Map an interval's check rows and run facts to one decision (module docstring: the rules)."""
    alerting = [row for row in rows if row.alerting]
    if facts.critical_failure:
        failed = ", ".join(facts.failed_critical) or "a critical expectation"
        return Decision(
            "halt", DATA_PROBLEM,
            f"data problem: critical data-quality failure ({failed}); no model decision is taken on bad data. "
            "Fix the logs or the serving system, then re-run the interval.",
            [f"data_quality:{name}" for name in facts.failed_critical], "critical",
        )
    groups = _grouped(alerting)
    quality, system, data, drift = (groups[key] for key in ("quality", "system", "data_quality", "drift"))
    if quality:
        decided = _quality_decision(quality, drift, facts)
        also = [row for row in system + data if f"{row.check_name}@{row.interval_start.date().isoformat()}"
                not in decided.checks]
        if not also:
            return decided
        return Decision(decided.action, decided.problem, f"{decided.reason} Also alerting: {_explained(also)}",
                        decided.checks + _names(also), _severity(quality + also))
    if system:
        return _alert(ENVIRONMENT_PROBLEM, system, "system KPIs out of bounds; no model change: check the serving "
                      "environment (latency, errors, traffic)")
    if data:
        return _alert(DATA_PROBLEM, data, "data quality below its thresholds; no model change")
    if drift:
        return _alert(INPUT_DRIFT, drift, "inputs drifted while quality holds; no model change yet")
    return Decision("healthy", "none", "healthy: no check alerts")


def _grouped(alerting: list[CheckRow]) -> dict[str, list[CheckRow]]:
    """Alerting rows by the kind of metric behind them; an anomaly counts where its most deviating metric is."""
    groups: dict[str, list[CheckRow]] = {"quality": [], "system": [], "data_quality": [], "drift": []}
    for row in alerting:
        groups[metric_kind(row)].append(row)
    return groups


def metric_kind(row: CheckRow) -> str:
    """The kind of metric behind a check row; an anomaly takes the kind of its most deviating metric."""
    if row.metric is not None:
        return catalogue.metric(row.metric).kind
    deviating = row.facts.get("deviating") or [{"kind": "system"}]
    return deviating[0]["kind"]


def _names(rows: list[CheckRow]) -> list[str]:
    return [f"{row.check_name}@{row.interval_start.date().isoformat()}" for row in rows]


def _severity(rows: list[CheckRow]) -> str:
    return "critical" if any(row.severity == "critical" for row in rows) else "warning"


def _explained(rows: list[CheckRow]) -> str:
    return "; ".join(f"{row.check_name} ({row.interval_start.date().isoformat()}): {row.reason}" for row in rows)


def _alert(problem: str, rows: list[CheckRow], summary: str) -> Decision:
    return Decision("alert", problem, f"{problem}: {summary}. {_explained(rows)}", _names(rows), _severity(rows))


def _quality_decision(quality: list[CheckRow], drift: list[CheckRow], facts: RunFacts) -> Decision:
    if facts.serving_lags():
        # The quality judged is the old version's: another retrain or rollback would not change what serves.
        return Decision(
            "alert", ENVIRONMENT_PROBLEM,
            f"environment problem: quality breached, but the logs show version {facts.served_version} serving while "
            f"the champion has been version {facts.champion} since {facts.champion_set_at.isoformat()}: the serving "
            "system has not picked up the `champion` alias, so no further model change is made. "
            + _explained(quality),
            _names(quality), _severity(quality),
        )
    switch = facts.switch
    recent = switch is not None and switch.intervals_live <= facts.rollback_window
    if recent and switch.previous_did_better() and facts.rollback_enabled:
        compared = "on the same requests" if switch.same_requests else "on their own recent intervals"
        return Decision(
            "rollback", MODEL_PROBLEM,
            f"model problem: quality breached {switch.intervals_live} interval(s) after version {switch.version} "
            f"went live, and version {switch.previous} did better {compared} ({switch.metric} "
            f"{switch.previous_metric:.4g} against {switch.current_metric:.4g}): roll back to {switch.previous}. "
            + _explained(quality),
            _names(quality), _severity(quality),
        )
    drifted = bool(facts.drifted_features or drift)
    new_labels = facts.new_labels or 0
    enough = new_labels >= facts.min_new_labels
    if drifted and enough and facts.retrain_enabled:
        features = ", ".join(facts.drifted_features) or "see the drift checks"
        return Decision(
            "retrain", MODEL_PROBLEM,
            f"model problem: quality breached with drift ({features}) and {new_labels} new labels "
            f"(at least {facts.min_new_labels}): retrain a challenger. " + _explained(quality + drift),
            _names(quality + drift), _severity(quality),
        )
    missing = []
    if recent and not facts.rollback_enabled:
        missing.append("rollback is disabled")
    elif recent and not switch.previous_did_better():
        missing.append(f"version {switch.version} is new, but {switch.previous or 'no earlier version'} did not do "
                       "better")
    if not drifted:
        missing.append("no drift, so retraining on the same inputs is unlikely to help (check the labels)")
    elif not enough:
        missing.append(f"only {new_labels} new labels since the champion was trained "
                       f"({facts.min_new_labels} needed to retrain)")
    elif not facts.retrain_enabled:
        missing.append("retraining is disabled")
    return Decision(
        "alert", MODEL_PROBLEM,
        f"model problem: quality breached; no automatic action because {'; '.join(missing)}. " + _explained(quality),
        _names(quality), _severity(quality),
    )


WORSE_BY = 0.5
"""An open condition is notified again when a check's excess grows by half of what was last notified."""


def condition_of(rows: list[CheckRow], decision: Decision) -> dict[str, dict[str, Any]]:
    """The open condition behind a decision: each driving check's severity and how far past its limit it is.

    Halts have no check rows; their failed critical expectations count as critical checks. The problem
    (``problem:environment problem``, say) is part of the condition: the same checks behind another
    problem are news.
    """
    driving = {name.split("@")[0] for name in decision.checks}
    condition: dict[str, dict[str, Any]] = {
        name: {"severity": "critical", "excess": 0.0} for name in driving if name.startswith("data_quality:")
    }
    if condition or any(row.alerting and row.check_name in driving for row in rows):
        condition[f"problem:{decision.problem}"] = {"severity": decision.severity or "warning", "excess": 0.0}
    for row in rows:
        if not (row.alerting and row.check_name in driving):
            continue
        known = condition.get(row.check_name)
        excess = _excess(row)
        if known is None or excess > known["excess"]:
            condition[row.check_name] = {"severity": row.severity, "excess": excess}
    return condition


def _excess(row: CheckRow) -> float:
    """How far past its limit a breached check is: standard errors, the anomaly score gap, or a share of the limit."""
    if row.check_kind == "control_limit" and row.score is not None:
        return float(row.score)
    if row.check_kind == "isolation_forest" and row.observed is not None and row.limit_low is not None:
        return float(row.limit_low - row.observed)
    if row.observed is None:
        return 0.0
    limit = row.limit_low if row.limit_low is not None and row.observed < row.limit_low else row.limit_high
    if limit is None:
        return 0.0
    return abs(row.observed - limit) / max(abs(limit), 1e-9)


def notification_due(
    current: dict[str, dict[str, Any]],
    previous_open: dict[str, dict[str, Any]] | None,
    previous_notified: dict[str, dict[str, Any]] | None,
) -> tuple[bool, str]:
    """Whether an open condition is news: new, joined by a check, escalated to critical, or worse.

    Parameters
    ----------
    current : dict
        `condition_of` this interval's decision.
    previous_open, previous_notified : dict or None
        The previous interval's open condition, and the condition as last
        notified while it stayed open.

    Returns
    -------
    (bool, str)
        Whether to notify, and why (or why not) in words.
    """
    if not current:
        return False, "nothing open"
    if not previous_open or not set(current) & set(previous_open):
        return True, "new condition"
    notified = previous_notified or {}
    joined = sorted(set(current) - set(notified))
    if joined:
        return True, f"joined by {', '.join(joined)}"
    escalated = sorted(
        name for name, now in current.items()
        if now["severity"] == "critical" and notified[name]["severity"] != "critical"
    )
    if escalated:
        return True, f"escalated to critical: {', '.join(escalated)}"
    worse = sorted(
        name for name, now in current.items()
        if now["excess"] > 0 and now["excess"] >= (1 + WORSE_BY) * max(notified[name]["excess"], 1e-9)
    )
    if worse:
        return True, f"worse: {', '.join(worse)}"
    return False, f"already notified: {', '.join(sorted(notified))} still open and no worse"
