"""Shared by the import commands: resolving ``--user`` and the end-of-run summary."""
from __future__ import annotations

from collections import Counter

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from webapp.studies.ingest import IngestBatch, Outcome


def user_named(username: str | None):
    if not username:
        return None
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no user {username!r}") from None


def print_summary(command: BaseCommand, batch: IngestBatch, seconds: float) -> None:
    """Counts per outcome, then the rejection reasons grouped, so a folder of 10,000 files stays readable."""
    counts = batch.counts()
    command.stdout.write(", ".join(f"{n} {status}" for status, n in counts.items()) + f" in {seconds:.2f} s")
    reasons = Counter(r.reason for r in batch.results if r.status in (Outcome.REJECTED, Outcome.CONFLICT))
    for reason, n in reasons.most_common():
        example = next(r.name for r in batch.results if r.reason == reason)
        command.stdout.write(f"  {n} x {reason}  (e.g. {example})")
    if batch.results and not any(r.landed for r in batch.results):
        raise CommandError("nothing was imported")
