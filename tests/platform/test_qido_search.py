"""QIDO-RS matching rules, paging and attribute selection, through the API with token authentication."""
from __future__ import annotations

import io

import pydicom
import pytest
from platform_helpers import as_new_study

from webapp.studies.ingest import IngestBatch

pytestmark = pytest.mark.django_db

STUDIES = {
    "A": dict(PatientName="Doe^Jane", PatientID="P1", StudyDate="20200115", AccessionNumber="ACC1",
              StudyDescription="CHEST CT"),
    "B": dict(PatientName="Doe^John", PatientID="P2", StudyDate="20201231", AccessionNumber="ACC2",
              StudyDescription="CHEST CT LOW DOSE"),
    "C": dict(PatientName="Smith^Ann", PatientID="P3", StudyDate="20210301", AccessionNumber="ACC3",
              StudyDescription="ABDOMEN"),
}
SIZES = {"A": 3, "B": 2, "C": 1}


@pytest.fixture
def archive(storage_dir, phantom_files) -> dict[str, str]:
    """Three studies; returns their Study Instance UIDs by letter."""
    uids = {}
    with IngestBatch() as batch:
        for letter, tags in STUDIES.items():
            for n, data in enumerate(as_new_study(phantom_files[:SIZES[letter]], **tags)):
                uids[letter] = batch.add_file(data, f"{letter}{n}").study_instance_uid
    return uids


def search(api, url="/dicomweb/studies", **params):
    response = api.get(url, params, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/dicom+json")
    return response


def accessions(response) -> list[str]:
    return sorted(row["00080050"]["Value"][0] for row in response.json())


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["ACC1", "ACC2", "ACC3"]),
        ({"PatientID": "P2"}, ["ACC2"]),
        ({"00100020": "P3"}, ["ACC3"]),  # tag instead of keyword
        ({"PatientName": "doe*"}, ["ACC1", "ACC2"]),  # person names match case-insensitively
        ({"PatientName": "Doe^J?n*"}, ["ACC1"]),
        ({"StudyDescription": "CHEST*"}, ["ACC1", "ACC2"]),
        ({"StudyDescription": "chest*"}, []),  # other strings are case-sensitive
        ({"StudyDate": "20200101-20201231"}, ["ACC1", "ACC2"]),
        ({"StudyDate": "20201231-"}, ["ACC2", "ACC3"]),
        ({"StudyDate": "-20200115"}, ["ACC1"]),
        ({"AccessionNumber": "ACC1\\ACC3"}, ["ACC1", "ACC3"]),
        ({"ModalitiesInStudy": "CT"}, ["ACC1", "ACC2", "ACC3"]),
        ({"ModalitiesInStudy": "MR"}, []),
        ({"PatientName": ""}, ["ACC1", "ACC2", "ACC3"]),  # universal matching
    ],
)
def test_study_matching(api, archive, params, expected):
    assert accessions(search(api, **params)) == expected


def test_uid_lists_and_computed_counts(api, archive):
    rows = search(api, StudyInstanceUID=f"{archive['A']},{archive['C']}").json()
    by_uid = {row["0020000D"]["Value"][0]: row for row in rows}
    assert set(by_uid) == {archive["A"], archive["C"]}
    a = by_uid[archive["A"]]
    assert a["00201208"]["Value"] == [3] and a["00201206"]["Value"] == [1] and a["00080061"]["Value"] == ["CT"]
    assert a["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert a["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{archive['A']}")


def test_limit_offset_and_the_more_results_warning(api, archive):
    first = search(api, limit=2)
    assert len(first.json()) == 2 and "additional results" in first["Warning"]
    rest = search(api, limit=2, offset=2)
    assert len(rest.json()) == 1 and not rest.has_header("Warning")
    assert accessions(first) + accessions(rest) == ["ACC1", "ACC2", "ACC3"]


def test_includefield_and_ignored_attributes(api, archive):
    plain = search(api, PatientID="P1").json()[0]
    assert "00200010" in plain  # StudyID is a default study attribute
    series = search(api, f"/dicomweb/studies/{archive['A']}/series").json()
    assert "00100020" not in series[0]
    with_patient = search(api, f"/dicomweb/studies/{archive['A']}/series", includefield="PatientID,00080050").json()
    assert with_patient[0]["00100020"]["Value"] == ["P1"] and with_patient[0]["00080050"]["Value"] == ["ACC1"]
    everything = search(api, "/dicomweb/series", includefield="all", PatientID="P2").json()
    assert len(everything) == 1 and everything[0]["00201209"]["Value"] == [2]
    ignored = search(api, PatientAge="040Y", fuzzymatching="false")
    assert "PatientAge" in ignored["Warning"] and len(ignored.json()) == 3
    assert api.get("/dicomweb/studies", {"NotAKeyword": "x"}).status_code == 400


def test_series_and_instance_levels(api, archive):
    series = search(api, f"/dicomweb/studies/{archive['A']}/series", Modality="CT").json()
    assert len(series) == 1 and series[0]["00080060"]["Value"] == ["CT"]
    series_uid = series[0]["0020000E"]["Value"][0]
    instances = search(api, f"/dicomweb/studies/{archive['A']}/series/{series_uid}/instances").json()
    assert sorted(i["00200013"]["Value"][0] for i in instances) == [1, 2, 3]
    assert instances[0]["00280010"]["Value"] == [64]
    assert len(search(api, "/dicomweb/instances", InstanceNumber="1").json()) == 3
    assert len(search(api, f"/dicomweb/studies/{archive['B']}/instances").json()) == 2
    assert search(api, "/dicomweb/series", SeriesInstanceUID="1.2.3.4").json() == []


def test_annotators_get_the_studies_without_patient_identity(archive, django_user_model):
    from factories import client_for, make_user

    annotator = client_for(make_user("annie", "annotator"))
    row = next(r for r in annotator.get("/dicomweb/studies", {"AccessionNumber": "ACC1"}).json())
    assert row["00100010"] == {"vr": "PN"} and row["00100020"] == {"vr": "LO"}
    series = annotator.get(f"/dicomweb/studies/{archive['A']}/series").json()[0]["0020000E"]["Value"][0]
    metadata = annotator.get(f"/dicomweb/studies/{archive['A']}/series/{series}/metadata").json()
    assert all("Value" not in item.get("00100010", {}) for item in metadata) and len(metadata) == 3
    instance = metadata[0]["00080018"]["Value"][0]
    file = annotator.get("/wado", {"requestType": "WADO", "studyUID": archive["A"], "seriesUID": series,
                                   "objectUID": instance})
    ds = pydicom.dcmread(io.BytesIO(b"".join(file.streaming_content)))
    assert ds.PatientName == "" and ds.PatientID == "" and ds.pixel_array.shape == (64, 64)


@pytest.mark.parametrize("key", ["PatientName", "AccessionNumber", "StudyInstanceUID", "StudyDate"])
def test_a_nul_character_in_a_filter_is_a_400_not_a_500(api, archive, key):
    response = api.get("/dicomweb/studies", {key: "AB\x00C"}, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 400 and "NUL" in response.content.decode()
