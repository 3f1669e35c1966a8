"""Review rules, free of HTTP: the box state machine, the decision's create-or-update and sign-off, and the AI's
proposed boxes. The views parse the request (the version the client edited) and render the result; every change
here is versioned (``webapp.core.concurrency``) and audited (``webapp.core.audit``) in one transaction, and a refusal
is a domain exception (``Refused``, ``StaleVersion``) that ``webapp.api.exception_handler`` maps to HTTP.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction

from webapp.analysis.models import AnalysisRun, Finding
from webapp.core import audit
from webapp.core.concurrency import StaleVersion, VersionRequired, ensure_current
from webapp.core.errors import Refused
from webapp.studies.models import Study

from .models import Box, Decision
from .serializers import decision_or_placeholder, render_box, render_decision
from .worklist import set_status

#: What a PATCH may change; patient_coords follow the geometry.
EDITABLE = ("x0", "y0", "x1", "y1", "label")
#: The annotator's verdicts on a box (``POST .../accept/``, ``.../reject/``).
TRANSITIONS = ("accept", "reject")


# --------------------------------------------------------------------------- boxes

def create_box(study: Study, values: dict[str, Any], user) -> Box:
    """A box the annotator drew: human and accepted."""
    box = Box(study=study, provenance=Box.Provenance.HUMAN, status=Box.Status.ACCEPTED, created_by=user,
              updated_by=user, **values)
    audit.audited_create(box, actor=user, action="box.create")
    return box


def _change(box: Box, expected: int, changes: dict[str, Any], user, action: str) -> None:
    audit.audited_update(box, expected, {**changes, "updated_by": user}, actor=user, action=action, render=render_box)


def edited_state(box: Box) -> dict[str, Any]:
    """Editing an AI box makes it the annotator's (ai_edited) and accepts it; human boxes stay human."""
    provenance = box.provenance if box.provenance == Box.Provenance.HUMAN else Box.Provenance.AI_EDITED
    return {"provenance": provenance, "status": Box.Status.ACCEPTED}


def edit_box(box: Box, expected: int, values: dict[str, Any], user) -> None:
    """Move, resize or relabel; nothing is saved when nothing changes, but a stale version is still refused."""
    edits = {k: values[k] for k in EDITABLE if k in values and getattr(box, k) != values[k]}
    if not edits:
        ensure_current(box, expected, render_box)
        return
    _change(box, expected, {**edits, "patient_coords": values["patient_coords"], **edited_state(box)}, user,
            "box.update")


def delete_box(box: Box, expected: int, user) -> None:
    """Soft delete: the box stays, with status deleted."""
    ensure_current(box, expected, render_box)
    if box.status == Box.Status.DELETED:
        raise Refused("This box is already deleted.")
    _change(box, expected, {"status": Box.Status.DELETED}, user, "box.delete")


def transition_box(box: Box, expected: int, transition: str, user) -> None:
    """Accept (an AI proposal becomes ai_accepted) or reject a box that is not deleted."""
    ensure_current(box, expected, render_box)
    if box.status == Box.Status.DELETED:
        raise Refused("This box was deleted; it can no longer be accepted or rejected.")
    if transition == "accept":
        provenance = Box.Provenance.AI_ACCEPTED if box.provenance == Box.Provenance.AI else box.provenance
        changes = {"status": Box.Status.ACCEPTED, "provenance": provenance}
    else:
        changes = {"status": Box.Status.REJECTED}
    _change(box, expected, changes, user, f"box.{transition}")


def propose_ai_boxes(sender, run: AnalysisRun, findings: Sequence[Finding], labels: Sequence[str], **kwargs) -> None:
    """``analysis.signals.results_stored``: one proposed AI box per finding, replacing the run's earlier AI boxes
    (boxes a human accepted or edited stay)."""
    Box.objects.filter(analysis_run=run, provenance=Box.Provenance.AI).delete()
    Box.objects.bulk_create(
        Box(study_id=run.study_id, analysis_run=run, finding=f, sop_instance_uid=f.sop_instance_uid,
            x0=f.x0, y0=f.y0, x1=f.x1, y1=f.y1, patient_coords=f.patient_coords, label=label,
            score=f.score, provenance=Box.Provenance.AI, status=Box.Status.PROPOSED)
        for f, label in zip(findings, labels)
    )


# --------------------------------------------------------------------------- the decision

@transaction.atomic  # the decision, its audit event and the study status move together
def save_decision(study: Study, values: dict[str, Any], user, sent_version: int | None) -> tuple[Decision, bool]:
    """Confirm or correct the study's diagnosis; returns the decision and whether it was created.

    With no decision yet and no version (or version 0) sent, it is created; an existing one is changed only
    knowingly (the version the client edited, else VersionRequired). A change of label or comment
    re-opens the review (the sign-off covered the previous text); a save that changes nothing writes nothing, but
    a stale version is still refused.
    """
    decision = decision_or_placeholder(study)
    stored = {**values, "reviewed": False, "decided_by": user}
    if decision.pk is None and sent_version in (None, 0):
        decision, created = _create_decision(study, stored, user), True
    else:
        if sent_version is None:
            raise VersionRequired()
        expected = sent_version
        if any(getattr(decision, k) != v for k, v in values.items()):
            audit.audited_update(decision, expected, stored, actor=user, action="decision.update",
                                 render=render_decision)
        else:
            ensure_current(decision, expected, render_decision)
        created = False
    if not decision.reviewed:  # still signed off only when nothing changed
        set_status(study, Study.Status.IN_REVIEW)
    return decision, created


def _create_decision(study: Study, values: dict[str, Any], user) -> Decision:
    decision = Decision(study=study, **values)
    try:
        audit.audited_create(decision, actor=user, action="decision.create")
    except IntegrityError:  # another clinician created it between our read and our insert
        raise StaleVersion(render_decision(Decision.objects.get(study=study)), 0, "decision") from None
    return decision


def decision_to_sign_off(study: Study, expected: int | None) -> Decision:
    """The decision a sign-off applies to: it must exist, and be at ``expected`` when the client named one."""
    decision = decision_or_placeholder(study)
    if decision.pk is None:
        raise Refused("Record a diagnosis before marking the study reviewed.")
    if expected is not None:
        ensure_current(decision, expected, render_decision)
    return decision


def sign_off(study: Study, decision: Decision, expected: int | None, user) -> None:
    """Mark the decision reviewed (as it is now when ``expected`` is None) and the study reviewed."""
    if not decision.reviewed:
        audit.audited_update(decision, decision.version if expected is None else expected,
                             {"reviewed": True, "decided_by": user}, actor=user, action="decision.review",
                             render=render_decision)
    set_status(study, Study.Status.REVIEWED)
