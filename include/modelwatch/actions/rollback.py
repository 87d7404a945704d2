"""Rollback: move the `champion` alias back to the version that served before.

`compare_versions` replays two registered versions on the same labeled
predictions, so the decision can tell whether the version that served before
did better on the intervals since the current one went live. `rollback`
moves the alias, refusing whenever the registry no longer looks the way the
decision saw it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modelwatch import registry
from modelwatch.actions import ActionOutcome
from modelwatch.actions.labeled import Interval, read_labeled
from modelwatch.actions.retrain import holdout_metrics, improvement
from modelwatch.config import ModelConfig

log = logging.getLogger(__name__)

RESTORED_FROM_TAG = "modelwatch.restored_from"
"""On the version a rollback made champion again: the version it replaced."""
ROLLBACK_REASON_TAG = "modelwatch.rollback_reason"
RESTORED_AT_TAG = "modelwatch.restored_at"

ROLLED_BACK = "rolled_back"
REFUSED = "refused"


def compare_versions(
    model: ModelConfig,
    *,
    staging_url: str,
    intervals: Sequence[Interval],
    labels_until: datetime,
    current: str,
    previous: str,
) -> dict[str, Any] | None:
    """Replay two registered versions on the same labeled predictions and say which did better.

    Parameters
    ----------
    model : ModelConfig
        The model; compared on its `retrain_metric`.
    staging_url : str
        The staging area holding the intervals' published batches.
    intervals : sequence of (datetime, datetime)
        The intervals to replay, e.g. those since `current` went live.
    labels_until : datetime
        Labels known by this interval end count (the current run's interval end).
    current, previous : str
        Registered versions of `model.registry_name`.

    Returns
    -------
    dict or None
        ``metric``, ``current_version``, ``previous_version``, ``current`` and
        ``previous`` (the metric's values; None where undefined on the rows,
        e.g. AUC with one class), ``labels`` (rows replayed), ``better``
        (``"current"`` or ``"previous"``; None on a tie or an undefined value),
        ``improvement`` (how far ``previous`` is on the better side of
        ``current``) and ``unpublished_intervals``. None when the registry
        lacks either version or the intervals hold no labels.
    """
    name = model.registry_name
    if registry.get_version(name, current) is None or registry.get_version(name, previous) is None:
        return None
    rows = read_labeled(model, staging_url, intervals, labels_until)
    if not len(rows):
        return None
    metric = model.retrain_metric
    values = {
        role: holdout_metrics(model, registry.load_model(name, version), rows)[metric]
        for role, version in (("current", current), ("previous", previous))
    }
    gain = improvement(metric, values["previous"], values["current"])
    better = "previous" if gain > 0 else "current" if gain < 0 else None  # NaN compares false both ways
    comparison = {
        "metric": metric,
        "current_version": str(current),
        "previous_version": str(previous),
        "current": _defined(values["current"]),
        "previous": _defined(values["previous"]),
        "labels": len(rows),
        "better": better,
        "improvement": _defined(gain),
        "unpublished_intervals": [start.isoformat() for start, _ in rows.unpublished],
    }
    log.info("%s: replayed v%s and v%s on %d labels: %s", model.name, current, previous, len(rows), comparison)
    return comparison


def rollback(
    model: ModelConfig, *, from_version: str, to_version: str | None, dry_run: bool, reason: str
) -> ActionOutcome:
    """Move `champion` from `from_version` back to `to_version`, tagging the restored version.

    The restored version gets `RESTORED_FROM_TAG` (`from_version`),
    `ROLLBACK_REASON_TAG` and `RESTORED_AT_TAG` before the alias moves, so a
    repeated call finds the alias already on `to_version`, tagged as restored
    from `from_version`, and reports ``rolled_back`` again without moving anything.

    Parameters
    ----------
    model : ModelConfig
        The model; `rollback.enabled` and `registry_name` apply.
    from_version : str
        The champion the decision saw and wants undone.
    to_version : str or None
        The version that served before it; None when there is none.
    dry_run : bool
        Check everything, move nothing.
    reason : str
        Why (the decision's reason), recorded on the restored version.

    Returns
    -------
    ActionOutcome
        ``outcome`` is ``rolled_back`` (the champion is `to_version` now),
        ``refused`` (champion unchanged; ``facts["reason"]`` says why:
        ``disabled``, ``no_earlier_version``, ``unknown_version`` or
        ``champion_moved``), ``not_possible`` (the registry knows no such
        model) or ``dry_run``.
    """
    name = model.registry_name
    from_version, to_version = str(from_version), (None if to_version is None else str(to_version))
    versions = registry.list_versions(name)
    if not versions:
        return ActionOutcome(
            "not_possible",
            f"{model.name}: the MLflow registry knows no model {name!r}, so there is no `champion` to roll back; "
            "a model monitored from its logs only is rolled back by its serving system",
            facts={"reason": "no_registered_model"},
        )
    champion = next((info.version for info in versions if registry.CHAMPION in info.aliases), None)

    def refused(why: str, detail: str) -> ActionOutcome:
        return ActionOutcome(REFUSED, f"rollback of {model.name} refused: {detail}; champion stays "
                             f"{_shown(champion)}", champion, champion, {"reason": why})

    if not model.rollback.enabled:
        return refused("disabled", "rollback is switched off (rollback.enabled: false in the models file)")
    if to_version is None:
        return refused("no_earlier_version", f"v{from_version} has no earlier version to go back to")
    restored = next((info for info in versions if info.version == to_version), None)
    if restored is None:
        return refused("unknown_version", f"v{to_version} is not a registered version of {name!r}")
    if champion == to_version and restored.tags.get(RESTORED_FROM_TAG) == from_version:
        done = (f"champion of {model.name} is already v{to_version}, restored from v{from_version} at "
                f"{restored.tags.get(RESTORED_AT_TAG)}: {restored.tags.get(ROLLBACK_REASON_TAG)}")
        if dry_run:
            return ActionOutcome("dry_run", f"dry run: {done}; nothing to move", champion, champion,
                                 {"would": "nothing", "repeat": True})
        return ActionOutcome(ROLLED_BACK, done, from_version, to_version, {"repeat": True})
    current = next((info for info in versions if info.version == champion), None)
    if current is not None and champion == from_version and current.tags.get(RESTORED_FROM_TAG) == to_version:
        return refused(
            "would_undo_rollback",
            f"v{from_version} is the champion because a rollback restored it from v{to_version} at "
            f"{current.tags.get(RESTORED_AT_TAG)}; moving back would undo that rollback",
        )
    if champion != from_version:
        return refused(
            "champion_moved",
            f"the champion is {_shown(champion)}, not v{from_version} the decision saw: someone moved it since",
        )
    if dry_run:
        return ActionOutcome(
            "dry_run", f"dry run: would move champion of {model.name} from v{from_version} back to v{to_version} "
            f"({reason}); nothing moved", champion, champion, {"would": ROLLED_BACK},
        )
    registry.set_version_tags(name, to_version, {
        RESTORED_FROM_TAG: from_version,
        ROLLBACK_REASON_TAG: reason,
        RESTORED_AT_TAG: datetime.now(UTC).isoformat(),
    })
    registry.set_champion(name, to_version)
    log.info("%s: champion moved back from v%s to v%s: %s", model.name, from_version, to_version, reason)
    return ActionOutcome(
        ROLLED_BACK, f"champion of {model.name} moved back from v{from_version} to v{to_version}: {reason}",
        from_version, to_version,
    )


def _defined(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _shown(version: str | None) -> str:
    return f"v{version}" if version is not None else "unset"

