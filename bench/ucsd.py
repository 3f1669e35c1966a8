"""Real-data check: COVID vs NonCOVID on the UCSD COVID-CT development split, patient-level 5-fold CV.

The same recipe (focal class-balanced loss, Adam, augmentation, two stages) on real CT slices from
``../shared/data/ucsd-covid-ct-dev/`` (see its PROVENANCE.md: never copy or commit those images). They are 8-bit
display images, not HU, so normalisation is a division by 255 and the lungs come from the pipeline's grey-level
segmentation (whole image when none is found). Folds are grouped by ``source_group`` (COVID images from one paper
stay together). The budget is small, sized for about 10-15 minutes on a 2-core CPU: 1,500 iterations of batch 16
at 112 px, width 0.25, lr 5e-4 (the default bundle's recipe) gave accuracy 0.688 [0.639, 0.738], F1 0.703
[0.654, 0.752], AUC 0.723 [0.676, 0.771] in 11.0 min; 200 iterations at 96 px and lr 1e-3 gave 0.662, 0.689,
0.714. The model is trained from scratch, so the figures are far from the published reference
(ImageNet-pretrained DenseNet-169 with self-supervised transfer, "Self-Trans", on the full dataset's official
split: about 0.86 accuracy, 0.85 F1, 0.94 AUC); the point is that the pipeline runs on real data and how
far a CPU budget gets. Skips with a message when the folder is absent.

    python bench/ucsd.py [--folds 5 --iterations 1500 --size 112 --width 0.25 --lr 5e-4 --out bench/out/ucsd]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from training.crossval import CrossvalConfig, ModelSpec, run_crossval  # noqa: E402
from training.datasets import PrepConfig, build_slice_set, image_studies  # noqa: E402
from training.report import write_report  # noqa: E402
from training.train import TrainConfig  # noqa: E402

DATA = Path(os.environ.get("LUNGSCOPE_SHARED_DATA", REPO.parent / "shared" / "data")) / "ucsd-covid-ct-dev"
CLASSES = ("NonCOVID", "COVID")
PUBLISHED = {"accuracy": 0.86, "f1": 0.85, "auc": 0.94}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--lr", type=float, default=5e-4, help="above the paper's 1e-4: a short budget")
    p.add_argument("--baseline", action="store_true", help="also cross-validate ResNet-18 (doubles the time)")
    p.add_argument("--init", help="also cross-validate MultiScaleVGG started from this bundle's backbone (e.g. "
                                  "default: trained on simulated lesions in real CT; same width)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "ucsd")
    a = p.parse_args(argv)
    if not (a.data / "labels.csv").is_file():
        print(f"SKIP: {a.data} is absent (real-data benchmark needs ../shared/data/ucsd-covid-ct-dev)")
        return 0
    torch.set_num_threads(a.threads)
    t0 = time.time()
    data = build_slice_set(image_studies(a.data), CLASSES, PrepConfig(size=a.size))
    print(f"{data.n_studies} images, {len(set(data.groups))} source groups, {data.class_counts()} "
          f"({time.time() - t0:.0f} s to load)", flush=True)
    models = [ModelSpec("MultiScaleVGG", "MultiScaleVGG", a.width)]
    if a.init:
        models.append(ModelSpec(f"MultiScaleVGG from {Path(a.init).name}", "MultiScaleVGG", a.width, a.init))
    if a.baseline:
        models.append(ModelSpec("ResNet-18", "resnet18", a.width))
    recipe = TrainConfig(iterations=a.iterations, lr=a.lr, val_every=max(25, a.iterations // 6),
                         patience=a.iterations, log_every=25, progress_bar=False)
    config = CrossvalConfig(folds=a.folds, models=tuple(models), train=recipe, device="cpu",
                            aggregation={"rule": "mean", "k": 1})
    raw = run_crossval(data, config, a.out)
    wall = time.time() - t0
    doc = write_report(raw, a.out, title=f"UCSD COVID-CT dev split, {a.folds}-fold CV grouped by source_group",
                       setup={"images": data.n_studies, "class_counts": data.class_counts(), "input_size": a.size,
                              "width": a.width, "recipe": recipe.to_dict(), "wall_s": round(wall, 1),
                              "threads": a.threads, "note": "one image = one study: slice and study level coincide"})
    print(f"\nCOVID vs NonCOVID, {a.folds}-fold CV (mean [95% t-interval over folds]), {wall / 60:.1f} min:")
    print(f"{'model':<22} {'accuracy':<24} {'F1':<24} {'AUC':<24}")
    for row, cis in doc["classifiers"].items():
        if row.endswith(("conv3", "conv4", "conv5")):
            continue
        s = cis["slice"]
        cells = [f"{s[m]['mean']:.3f} [{s[m]['lo']:.3f}, {s[m]['hi']:.3f}]" for m in ("accuracy", "f1", "auc")]
        print(f"{row:<22} " + " ".join(f"{c:<24}" for c in cells))
    print(f"{'published Self-Trans':<22} " + " ".join(f"{PUBLISHED[m]:<24}" for m in ("accuracy", "f1", "auc")))
    print(f"report: {a.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
