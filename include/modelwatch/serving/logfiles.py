"""Prediction records as the log contract's JSONL: partitioned by day, rotated, published whole.

A record goes to ``<root>/<model>/predictions/dt=<UTC day of its timestamp>/``.
Its file is written under a name the reader skips (``….jsonl.inprogress``: not
a log suffix, so `extract` lists it as ignored) and renamed to ``….jsonl`` once
complete: when it reaches `max_bytes`, when it is `max_seconds` old, when its
day is over, and when the server stops. A rename within one folder is atomic,
so a reader sees a file whole or not at all.

Every record is flushed to the operating system before its request is
answered, so a server that crashes loses no answered request: the next server
started on the same host publishes the files it left (`publish_abandoned`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

ACTIVE_SUFFIX = ".inprogress"
LOG_SUFFIX = ".jsonl"


class LogClosed(RuntimeError):
    """A record arrived after the log was closed."""


def host_label() -> str:
    """This host's name as it appears in log file names: letters, digits, '_' and '.' only.

    Without '-' the name's fields split unambiguously, and no host's files match another's prefix.
    """
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def timestamp_text(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as the simulator writes it: ``2026-03-02T10:15:03.120Z``."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass
class _ActiveFile:
    final: Path
    handle: BinaryIO
    opened_monotonic: float
    size: int = 0

    @property
    def active(self) -> Path:
        return self.final.with_name(self.final.name + ACTIVE_SUFFIX)


class PredictionLog:
    """The prediction log of one model on one host, safe to write from many threads.

    Parameters
    ----------
    root_url : str
        The model's log root (`ModelConfig.log_url`): a local path or a ``file://`` URL.
    model_name : str
        The folder under the root, and the `model_name` of every record.
    max_bytes : int
        A file is published once it holds this many bytes (so it may exceed the limit by one record).
    max_seconds : float
        A file is published at the first `tick` once it has been open this long.

    Raises
    ------
    ValueError
        The root is not on a local or mounted filesystem: an object store cannot rename
        atomically or append, so files could be read half-written.
    """

    def __init__(self, root_url: str, model_name: str, *, max_bytes: int, max_seconds: float):
        fs, path = fsspec.core.url_to_fs(root_url)
        if not isinstance(fs, LocalFileSystem):
            raise ValueError(
                f"the log root of {model_name!r} is {root_url!r}: the server writes its logs to a local or mounted "
                "folder only (an object store cannot publish a file atomically); write locally and copy the "
                f"finished *{LOG_SUFFIX} files with a sync tool"
            )
        if max_bytes < 1 or max_seconds <= 0:
            raise ValueError(f"expected max_bytes >= 1 and max_seconds > 0 (got {max_bytes}, {max_seconds})")
        self.folder = Path(path) / model_name / "predictions"
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._host = host_label()
        self._prefix = f"serve-{self._host}-{os.getpid()}"
        self._lock = threading.Lock()
        self._active: dict[date, _ActiveFile] = {}
        self._sequence = 0
        self._present_day: date | None = None
        self._closed = False

    def partition(self, day: date) -> Path:
        """The ``dt=`` folder of a UTC day."""
        return self.folder / f"dt={day.isoformat()}"

    def write(self, record: Mapping[str, Any], moment: datetime) -> None:
        """Append one record to the file of its day and flush it to the operating system.

        Parameters
        ----------
        record : mapping
            A prediction record in the contract's form (JSON-serialisable).
        moment : datetime
            The record's `timestamp`, which chooses its partition.

        Raises
        ------
        LogClosed
            After `close`.
        OSError
            The file could not be written (the caller answers the request with an error).
        """
        line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode()
        day = moment.astimezone(UTC).date()
        with self._lock:
            if self._closed:
                raise LogClosed(f"the prediction log under {self.folder} is closed")
            current = self._active.get(day) or self._open(day)
            current.handle.write(line)
            current.handle.flush()
            current.size += len(line)
            if current.size >= self.max_bytes:
                self._publish(day)

    def tick(self, now: datetime | None = None) -> None:
        """Publish the files that are old enough or whose day is over; create today's partition.

        Today's folder exists from the first tick of the day, even before any
        request: a day the server ran without traffic reads as "served
        nothing", not as "logs missing".
        """
        now = now or datetime.now(UTC)
        today = now.astimezone(UTC).date()
        with self._lock:
            if self._closed:
                return
            for day, current in list(self._active.items()):
                if day < today or time.monotonic() - current.opened_monotonic >= self.max_seconds:
                    self._publish(day)
            if today != self._present_day:
                self.partition(today).mkdir(parents=True, exist_ok=True)
                self._present_day = today

    def close(self) -> None:
        """Publish every open file; later writes raise `LogClosed`."""
        with self._lock:
            for day in list(self._active):
                self._publish(day)
            self._closed = True

    def publish_abandoned(self) -> list[Path]:
        """Publish the files that servers on this host left in progress when they died.

        Only files named after this host and a process that no longer runs are
        touched: another server writing to the same root keeps its own.

        Returns
        -------
        list of Path
            The published files, under their final names.
        """
        published = []
        for active in sorted(self.folder.glob(f"dt=*/serve-{self._host}-*{LOG_SUFFIX}{ACTIVE_SUFFIX}")):
            final = active.with_name(active.name.removesuffix(ACTIVE_SUFFIX))
            pid_text = final.name.removesuffix(LOG_SUFFIX).rsplit("-", 3)[1]
            if not pid_text.isdigit() or int(pid_text) == os.getpid() or _process_alive(int(pid_text)):
                continue
            os.replace(active, final)
            log.warning("published %s, left in progress by server process %s", final, pid_text)
            published.append(final)
        return published

    def _open(self, day: date) -> _ActiveFile:
        partition = self.partition(day)
        partition.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        name = f"{self._prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{self._sequence:06d}{LOG_SUFFIX}"
        final = partition / name
        # Closed by _publish; "x" never overwrites a file, whoever wrote it.
        handle = open(final.with_name(final.name + ACTIVE_SUFFIX), "xb")
        current = _ActiveFile(final, handle, opened_monotonic=time.monotonic())
        self._active[day] = current
        return current

    def _publish(self, day: date) -> None:
        current = self._active.pop(day)
        current.handle.flush()
        os.fsync(current.handle.fileno())
        current.handle.close()
        os.replace(current.active, current.final)
        _sync_folder(current.final.parent)
