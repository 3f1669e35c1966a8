"""Warnings raised while reading a study, collected so a command prints one line per study instead of hundreds.

Real headers are often a little off (hashed UIDs with letters, odd value lengths); pydicom reads them and says so,
once per file and value, through both ``warnings`` and its ``pydicom`` logger. The commands (``python -m inference
analyze``, ``manage.py import_dicom``) gather them per study, print a summary line, and list them on ``--verbose``.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: Quoted values (the UID or string at fault) are left out when warnings are grouped into kinds.
_QUOTED = re.compile(r"'[^']*'")


@dataclass
class ReadWarnings:
    """The warning messages seen, in order (a message pydicom both warned and logged counts once)."""

    messages: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def summary(self, study: str) -> str:
        """``STUDY: N reading warnings (K x KIND; ...); --verbose lists them``."""
        kinds = Counter(_QUOTED.sub("'...'", message).split(". Please see")[0][:100] for message in self.messages)
        shown = "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(2))
        more = f"; {len(kinds) - 2} more kinds" if len(kinds) > 2 else ""
        return f"{study}: {len(self.messages)} reading warnings ({shown}{more}); --verbose lists them"

    def details(self) -> list[str]:
        """Each distinct message with how often it came, most frequent first."""
        return [f"  {n} x {message}" for message, n in Counter(self.messages).most_common()]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def collected(into: ReadWarnings) -> Iterator[ReadWarnings]:
    """Inside, warnings and the ``pydicom`` logger's records go to ``into`` and are not printed."""
    logger = logging.getLogger("pydicom")
    records, propagate = _Records(), logger.propagate
    logger.addHandler(records)
    logger.propagate = False
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield into
    finally:
        logger.removeHandler(records)
        logger.propagate = propagate
        warned = [str(w.message) for w in caught]
        only_logged = Counter(records.messages) - Counter(warned)  # warn_and_log sends each message both ways
        into.messages.extend(warned + list(only_logged.elements()))
