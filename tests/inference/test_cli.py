"""``python -m inference analyze``: JSON against the schema, several studies, bad input, real CT series."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from inference.__main__ import main
from inference.bundle import save_bundle
from inference.classifier import MultiScaleVGG

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "inference" / "schemas" / "analysis.schema.json").read_text())
TCIA = ("real-ct", "tcia-lung-pet-ct-dx", "Lung-PET-CT-Dx")


def validate(doc: dict) -> None:
    jsonschema.validate(doc, SCHEMA)


@pytest.fixture(scope="module")
def covid_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model biased to call every slice COVID, so saliency, boxes and severity run on every slice
    (with 6 quadrature steps: the machinery is under test here, not IG's accuracy)."""
    torch.manual_seed(1)
    model = MultiScaleVGG(3, width=0.125)
    with torch.no_grad():
        for head in model.heads:
            head.bias.copy_(torch.tensor([-3.0, -3.0, 3.0]))
    return save_bundle(model, tmp_path_factory.mktemp("covid") / "covid",
                       {"name": "covid-biased", "version": "1", "classes": ["NP", "CAP", "COVID"],
                        "saliency": {"steps": 6, "min_box_area_px": 30}})


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from training.phantom import generate_study, write_dicom_series

    study = generate_study(3, "COVID", size=96, n_slices=16)
    folder = tmp_path_factory.mktemp("phantom") / "series"
    write_dicom_series(study, folder)
    return folder, study


def test_phantom_study_json_validates(phantom_dir, covid_bundle: Path, tmp_path: Path, capsys) -> None:
    folder, study = phantom_dir
    out = tmp_path / "result.json"
    assert main(["analyze", str(folder), "--model", str(covid_bundle), "--saliency", "positive",
                 "--out", str(out), "--save-maps", str(tmp_path / "maps")]) == 0
    doc = json.loads(out.read_text())
    validate(doc)
    assert doc["prediction"]["label"] == "COVID" and doc["input"]["n_slices"] == 16
    assert doc["model"]["name"] == "covid-biased"
    indices = [s["index"] for s in doc["slices"]]
    assert indices == sorted(indices) and len(indices) >= 8
    z = [s["z_mm"] for s in doc["slices"]]
    assert z == sorted(z)
    assert all(s["lung_area_px"] > 0 for s in doc["slices"])
    # a random model's three scale maxima rarely meet, so its joint saliency may be empty: boxes are checked by
    # test_boxes on a known blob; here only that whatever comes out is consistent
    assert 0 <= doc["infection_percent"] <= 100
    for s in doc["slices"]:
        for b in s["boxes"]:
            assert 0 <= b["x0"] <= b["x1"] < 96 and 0 <= b["y0"] <= b["y1"] < 96 and b["label"] == "covid_lesion"
        assert s["infected_area_px"] <= s["lung_area_px"]
    assert doc["lung_volume_ml"] == pytest.approx(study.lung_mask.sum() * np.prod(study.spacing_mm) / 1000, rel=0.1)
    saved = sorted((tmp_path / "maps").glob("*/*.npz"))
    assert len(saved) == len(indices)
    with np.load(saved[0]) as maps:
        assert set(maps.files) == {"joint", "conv3", "conv4", "conv5", "cam3", "cam4", "cam5", "lung"}
        assert maps["joint"].shape == (96, 96)


def test_several_paths_give_json_lines_and_go_on_after_an_error(phantom_dir, tiny_bundle: Path, tmp_path: Path,
                                                                capsys) -> None:
    folder, _ = phantom_dir
    missing = tmp_path / "nope"
    status = main(["analyze", str(folder), str(missing), str(folder), "--model", str(tiny_bundle),
                   "--saliency", "none"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert status != 0 and len(lines) == 3
    for doc in lines:
        validate(doc)
    assert lines[1] == {"input": {"path": str(missing)}, "error": f"{missing}: no such file or folder"}
    assert lines[0]["prediction"] == lines[2]["prediction"]
    assert "no such file" in captured.err


def test_single_unreadable_path_exits_non_zero_with_one_line(tmp_path: Path, tiny_bundle: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "inference", "analyze", str(bad), "--model", str(tiny_bundle)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {bad}: no DICOM images found"]


def test_missing_model_is_refused(phantom_dir, tmp_path: Path, capsys) -> None:
    assert main(["analyze", str(phantom_dir[0]), "--model", str(tmp_path / "no-bundle")]) == 2
    assert "not found" in capsys.readouterr().err


def test_real_tcia_chest_series_end_to_end(shared_data: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    """Both real chest series in one run: every lung slice is analysed, the lungs are found all along."""
    base = shared_data.joinpath(*TCIA)
    paths = [next(p for p in (base / f"Lung_Dx-{case}").rglob("*") if p.is_dir() and any(p.glob("*.dcm")))
             for case in ("A0001", "A0002")]
    out = tmp_path / "real.jsonl"
    assert main(["analyze", *map(str, paths), "--model", str(tiny_bundle), "--saliency", "none",
                 "--out", str(out)]) == 0
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    for doc, n_slices in zip(docs, (64, 30)):
        validate(doc)
        assert doc["input"]["n_slices"] == n_slices and doc["input"]["kind"] == "dicom-series"
        indices = [s["index"] for s in doc["slices"]]
        # one contiguous run of lung slices covering most of a chest CT
        assert indices == list(range(indices[0], indices[-1] + 1)) and len(indices) >= 0.75 * n_slices
        # the default (fused) mask takes in the dense partial-volume rim of the costophrenic recesses, so one more
        # basal slice with a thin lung sliver passes the pipeline's 0.5 % lung-area floor
        assert all(s["lung_area_px"] > 5000 for s in doc["slices"][3:-3])
        assert 2000 < doc["lung_volume_ml"] < 9000


def test_abdominal_jpeg2000_series_is_handled(shared_data: Path, tiny_bundle: Path, capsys) -> None:
    path = shared_data / "real-ct" / "totalsegmentator-abdomen-j2k" / "example_ct_dicom"
    assert main(["analyze", str(path), "--model", str(tiny_bundle), "--saliency", "none"]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate(doc)
    assert doc["input"]["n_slices"] == 20
    assert sum(s["lung_area_px"] > 0 for s in doc["slices"]) <= 3  # no lungs in an upper abdomen
    assert doc["prediction"]["label"] in doc["model"]["classes"]


def test_reading_warnings_are_one_line_per_study_and_listed_on_verbose(covid_bundle: Path, tmp_path: Path,
                                                                        capsys) -> None:
    from factories import odd_header_series

    folders = [tmp_path / name for name in ("odd-a", "odd-b")]
    for folder in folders:
        odd_header_series(folder)
    args = ["analyze", *map(str, folders), "--model", str(covid_bundle), "--saliency", "none", "--lungs", "classical",
            "--out", str(tmp_path / "out.jsonl")]
    assert main(args) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines  # one per study, however many files warned
    for folder, line in zip(folders, lines):
        assert line.startswith(f"warning: {folder}: 8 reading warnings (8 x Invalid value for VR UI: '...')"), line
        assert line.endswith("--verbose lists them")

    assert main([*args, "--verbose"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and lines[1].startswith("  8 x Invalid value for VR UI: '")
    assert folders[0].name not in lines[1]  # the details are the messages, the study is in the summary above
