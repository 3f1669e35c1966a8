"""Configuring the DICOM node (admins only, API and command line alike) and what a failing destination does."""
from __future__ import annotations

import pytest
from dicomnode_helpers import free_port
from django.core.management import CommandError, call_command
from factories import client_for, ingest_phantom, make_user, wait_until

from webapp.analysis.models import AnalysisRun
from webapp.dicomnode.models import Delivery, DicomPeer, WebDestination
from webapp.dicomnode.services import study_sent_status


@pytest.mark.django_db
def test_only_admins_configure_peers_and_destinations():
    clinician, admin = make_user("doc", "clinician"), make_user("boss", "admin")
    peer = {"ae_title": "PACS1", "host": "pacs.local", "port": 104, "is_destination": True}
    assert client_for(clinician).get("/api/dicom/peers/").status_code == 403
    assert client_for(clinician).post("/api/dicom/peers/", peer, format="json").status_code == 403
    assert client_for(None).get("/api/dicom/web-destinations/").status_code in (401, 403)

    api = client_for(admin)
    refused = api.post("/api/dicom/peers/", {**peer, "host": ""}, format="json")
    assert refused.status_code == 400 and "host" in refused.json()
    assert api.post("/api/dicom/peers/", {**peer, "ae_title": "WAY_TOO_LONG_AE_TITLE"},
                    format="json").status_code == 400
    created = api.post("/api/dicom/peers/", peer, format="json")
    assert created.status_code == 201, created.content
    assert api.post("/api/dicom/peers/", peer, format="json").status_code == 400  # AE titles are unique
    web = api.post("/api/dicom/web-destinations/", {"name": "pacs-web", "url": "http://pacs.local/dicom-web",
                                                     "authorization": "Bearer s3cret"}, format="json")
    assert web.status_code == 201 and "authorization" not in web.json()
    assert WebDestination.objects.get().authorization == "Bearer s3cret"
    assert api.patch(f"/api/dicom/peers/{created.json()['id']}/", {"may_send": False},
                     format="json").status_code == 200
    assert not DicomPeer.objects.get().may_send


@pytest.mark.django_db
def test_dicom_peer_command_does_what_the_api_does(capsys):
    call_command("dicom_peer", "add", "--ae-title", "CT_SCANNER_1")
    call_command("dicom_peer", "add", "--ae-title", "PACS1", "--host", "pacs.local", "--port", "104",
                 "--destination", "--no-send")
    call_command("dicom_peer", "list")
    listed = capsys.readouterr().out
    assert "CT_SCANNER_1 [may send]" in listed and "PACS1 (pacs.local:104) [destination]" in listed
    with pytest.raises(CommandError, match="host"):
        call_command("dicom_peer", "add", "--ae-title", "PACS2", "--destination")
    with pytest.raises(CommandError, match="AE title"):
        call_command("dicom_peer", "add", "--ae-title", "BACK\\SLASH")
    call_command("dicom_peer", "remove", "--ae-title", "CT_SCANNER_1")
    with pytest.raises(CommandError, match="no peer"):
        call_command("dicom_peer", "remove", "--ae-title", "CT_SCANNER_1")
    assert list(DicomPeer.objects.values_list("ae_title", flat=True)) == ["PACS1"]


@pytest.mark.worker
def test_unreachable_destination_is_retried_then_marked_failed(start_worker, tmp_path):
    study = ingest_phantom(tmp_path, n_slices=4, size=64)
    series = study.series.get()
    DicomPeer.objects.create(ae_title="DOWN", host="127.0.0.1", port=free_port(), is_destination=True)
    start_worker(queues="default", LUNGSCOPE_DICOM_SEND_BACKOFF_S="0.2")
    clinician = make_user("doc", "clinician")
    assert client_for(clinician).post(f"/api/dicom/studies/{study.pk}/resend/").status_code == 400  # no decision

    AnalysisRun.objects.create(study=study, series=series, model_name="tiny", label="COVID",
                               status=AnalysisRun.Status.SUCCEEDED)
    delivery = Delivery.objects.get()
    wait_until(lambda: study_sent_status(study.pk) == "failed", 90, 0.5, "the send to give up")
    delivery.refresh_from_db()
    assert delivery.attempts == 5  # the first try and four retries
    assert "DOWN" in delivery.error and "association failed" in delivery.error
    assert delivery.job.status == "failed" and "association failed" in delivery.job.error

    # Results that cannot be built (the analysed series is gone) fail at once, without retries.
    broken = AnalysisRun.objects.create(study=study, series=None, model_name="tiny", label="COVID",
                                        status=AnalysisRun.Status.SUCCEEDED)
    delivery = Delivery.objects.get(run=broken)
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == "failed", 60, 0.5, "the send to fail")
    delivery.refresh_from_db()
    assert delivery.attempts == 0 and "no analysed series" in delivery.error
    assert delivery.job.status == "failed" and delivery.job.attempts == 1
