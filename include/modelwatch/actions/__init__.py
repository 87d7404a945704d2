"""Actions: the only code that changes the model registry or sends notifications.

Each action returns an `ActionOutcome`, which the pipeline records in
`model_actions` next to the decision that asked for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ActionOutcome:
    """What an action did, or why it did nothing.

    Attributes
    ----------
    outcome : str
        One word for analysts to group by, e.g. ``promoted``, ``kept_champion``,
        ``rolled_back``, ``refused``, ``not_possible``, ``dry_run``, ``notified``.
    detail : str
        One or two sentences a person on call can act on.
    from_version, to_version : str or None
        The `champion` before and after the action (equal when it did not move).
    facts : dict
        Small JSON-ready facts behind the outcome (metrics, label counts, versions).
    """

    outcome: str
    detail: str
    from_version: str | None = None
    to_version: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
