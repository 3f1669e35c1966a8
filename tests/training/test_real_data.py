"""The image-folder source on the real UCSD COVID-CT slices (skipped when ../shared/data is absent)."""
import csv

import numpy as np

from training.datasets import PrepConfig, build_slice_set, group_kfold, image_studies


def test_ucsd_images_load_and_split_by_source_group(shared_data, tmp_path):
    folder = shared_data / "ucsd-covid-ct-dev"
    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["label"] for r in rows} == {"COVID", "NonCOVID"}
    subset = [r for r in rows if r["label"] == "COVID"][:4] + [r for r in rows if r["label"] == "NonCOVID"][:4]
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(subset)
    data = build_slice_set(image_studies(folder, labels), ("NonCOVID", "COVID"), PrepConfig(size=64))
    assert data.images.shape == (8, 64, 64) and data.class_counts() == {"NonCOVID": 4, "COVID": 4}
    assert 0.05 < float(data.images.float().mean()) < 0.95  # real content, scaled to [0, 1]
    # the full label table: grouped folds never split a source group
    groups = np.array([r["source_group"] for r in rows])
    y = np.array([r["label"] == "COVID" for r in rows], dtype=int)
    for train, test in group_kfold(y, groups, 5):
        assert not set(groups[train]) & set(groups[test])
