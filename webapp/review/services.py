"""Review rules that are not HTTP: the AI's proposed boxes."""
from __future__ import annotations

from collections.abc import Sequence

from webapp.analysis.models import AnalysisRun, Finding

from .models import Box


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
