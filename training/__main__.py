"""Command line: ``python -m training {train-default,train-paper,train,crossval,prior-shift,opacity-fusion,retrain,
check-real} ...``
(``--help`` on each).

* ``train-default`` / ``train-paper``: the shipped ``models/default`` and ``models/paper`` bundles, phantom data,
  fixed seeds (see their MODEL_CARD.md).
* ``train``: a bundle from any source, recipe values overridable; runs under ``torchrun`` for DDP.
* ``crossval``: k-fold patient-level cross-validation, MultiScaleVGG vs ResNet-18, report folder.
* ``prior-shift``: a bundle's study prior shift fitted on a leave-one-background-out run (``training.prior_shift``).
* ``opacity-fusion``: a bundle's study decision from its probabilities and the HU opacity, fitted on the same kind
  of run (``training.opacity_fusion``).
* ``retrain``: the web app's retraining entry point on a training-ready export.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from inference.bundle import DEFAULT_META
from inference.preprocess import check_outside_lungs_mm

from .crossval import CrossvalConfig, ModelSpec, evaluate, run_crossval
from .datasets import (TASKS, PrepConfig, SliceSet, StudyRecord, build_slice_set, dicom_studies, export_studies,
                       group_split, held_out_splits, image_studies, phantom_studies, toy_studies)
from .calibration import (choose_aggregation, expected_calibration_error, fit_domain, logits_and_features,
                          study_probabilities)
from .distributed import setup, teardown
from .files import written_whole
from .report import write_report
from .retrain import RetrainConfig, retrain, summary_metrics, write_bundle
from .simulate.backgrounds import REAL_BACKGROUNDS, real_backgrounds, shared_data_dir, simulated_studies
from .train import TrainConfig, make_model, train

#: Real backgrounds the shipped models train on: all five. With three, a model held out on the other two called
#: whole healthy scans pneumonia (too few anatomies to learn what normal looks like); generalisation to unseen
#: anatomy is measured by ``crossval --split-by background`` instead, and the RICORD slabs are never trained on.
DEFAULT_BACKGROUNDS = tuple(REAL_BACKGROUNDS)


#: The shipped bundles' commands and their pinned values (everything else is the train command's default).
#: ``default`` trains on simulated lesions in the five real backgrounds and 60 phantom patients (390 studies, at most
#: 16 lung slices each) and is scored on 12 fresh phantom patients; it is sized for CPU inference and training
#: (width 0.25, 112 px), each slice blanked beyond 10 mm of its lungs. ``paper`` trains on 300 phantom studies
#: (256 px, 40 slices, data seed 1), at most 20 lung slices each, scored on 60 fresh ones (data seed 1001), at the
#: paper's width, input size, learning rate and budget. The shipped ``default`` 3.0.0 is these weights with a study
#: decision fitted afterwards on a leave-one-background-out run of the same recipe (``opacity-fusion``; its model
#: card gives the commands).
SHIPPED: dict[str, dict[str, Any]] = {
    "train-default": {"name": "default", "version": "3.0.0", "source": "simulated", "per_class": 14,
                      "phantom_patients": 60, "phantom_per_class": 1, "test_studies": 12, "test_per_class": 2,
                      "width": 0.25, "size": 112, "lr": 5e-4, "iterations": 6000, "val_every": 500,
                      "patience": 3000, "max_slices": 16, "outside_lungs_mm": 10.0},
    "train-paper": {"name": "paper", "version": "2.0.0", "studies": 300, "width": 1.0, "size": 224, "lr": 1e-4,
                    "iterations": 20000, "val_every": 500, "patience": 1000, "max_slices": 20},
}

RESUME_HELP = "continue from the work dir's checkpoint.pt (a larger --iterations extends the last stage)"


def _reach_mm(text: str) -> float:
    """``--outside-lungs-mm``: refused here, as the bundle loader would refuse the bundle (a usage error, before
    any data is made)."""
    try:
        return check_outside_lungs_mm(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_recipe(p: argparse.ArgumentParser, iterations: int, val_every: int, patience: int) -> None:
    g = p.add_argument_group("recipe (paper values unless said)")
    g.add_argument("--iterations", type=int, default=iterations, help="total budget over both stages (paper: 20000)")
    g.add_argument("--stage1-fraction", type=float, default=0.5)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--gamma", type=float, default=1.0, help="focal exponent")
    g.add_argument("--val-every", type=int, default=val_every, help="paper: 500")
    g.add_argument("--patience", type=int, default=patience, help="paper: 1000")
    g.add_argument("--log-every", type=int, default=25)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--width", type=float, default=1.0, help="MultiScaleVGG channel multiplier (1.0 = paper)")
    g.add_argument("--size", type=int, default=224, help="input size (224 = paper and shipped bundles)")
    g.add_argument("--max-slices", type=int, default=None, help="cap on lung slices per study")
    g.add_argument("--outside-lungs-mm", type=_reach_mm, default=None, metavar="MM",
                   help="blank each slice beyond this distance from its lungs (spine, heart, chest wall); the "
                        "bundle records it (crop.outside_lungs_mm) and the pipeline does the same")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g.add_argument("--device", default="auto")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def _add_bundle_run(p: argparse.ArgumentParser, work_dir: str) -> None:
    """Options of the commands that train one bundle (train, train-default, train-paper)."""
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--work-dir", type=Path, default=Path(work_dir), help="log and checkpoints")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop training after this wall time and keep the best weights so far (resumable)")


def _add_source(p: argparse.ArgumentParser, studies: int) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--source", choices=["simulated", "phantom", "toy", "dicom", "images", "export"],
                   default="phantom",
                   help="simulated: pneumonia painted into real shared-data backgrounds and phantom anatomy")
    g.add_argument("--data", type=Path, help="folder for dicom/images/export sources")
    g.add_argument("--labels", type=Path, help="labels CSV for dicom/images sources")
    g.add_argument("--studies", type=int, default=studies, help="phantom/toy: number of studies")
    g.add_argument("--data-seed", type=int, default=1, help="phantom/toy: generator seed")
    g.add_argument("--phantom-size", type=int, default=256)
    g.add_argument("--phantom-slices", type=int, default=40)
    g.add_argument("--task", choices=sorted(TASKS), default="3way")
    g.add_argument("--jobs", type=int, default=1, help="phantom/simulated: generator processes")
    g.add_argument("--data-cache", type=Path, default=None,
                   help="folder keeping prepared slice sets, keyed by the data arguments (reruns skip generation)")
    g.add_argument("--backgrounds", default=",".join(DEFAULT_BACKGROUNDS),
                   help="simulated: comma-separated real backgrounds (training.simulate.backgrounds.REAL_BACKGROUNDS)")
    g.add_argument("--phantom-patients", type=int, default=0, help="simulated: phantom patients as extra backgrounds")
    g.add_argument("--per-class", type=int, default=8, help="simulated: studies per class per real background")
    g.add_argument("--phantom-per-class", type=int, default=1, help="simulated: studies per class per phantom patient")
    g.add_argument("--test-backgrounds", default="",
                   help="simulated: real backgrounds held out of training, scored with fresh simulated lesions")


def _recipe(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(iterations=a.iterations, stage1_fraction=a.stage1_fraction, batch_size=a.batch_size, lr=a.lr,
                       gamma=a.gamma, val_every=a.val_every, patience=a.patience, log_every=a.log_every,
                       seed=a.seed, progress_bar=not a.no_progress)


def _simulated(a: argparse.Namespace, classes: tuple[str, ...], backgrounds: str, phantom_patients: int, seed: int,
               per_class: int) -> Iterator[StudyRecord]:
    """Simulated studies: ``per_class`` per class from each real background, ``--phantom-per-class`` from each
    phantom patient (many patients, few studies each: the phantom's anatomy varies, the real ones are few)."""
    specs = _specs(backgrounds, phantom_patients, seed)
    real = [s for s in specs if not s.startswith("phantom:")]
    phantom = [s for s in specs if s.startswith("phantom:")]
    yield from simulated_studies(real, per_class, seed, classes, jobs=a.jobs)
    yield from simulated_studies(phantom, a.phantom_per_class, seed, classes, jobs=a.jobs)


def _specs(backgrounds: str, phantom_patients: int, phantom_seed: int) -> list[str]:
    """Background specs for ``simulated_studies``: real names, then ``phantom:<seed>`` patients."""
    names = [n for n in backgrounds.split(",") if n]
    unknown = sorted(set(names) - set(REAL_BACKGROUNDS))
    if unknown:
        sys.exit(f"unknown background(s) {unknown}; choose from {sorted(REAL_BACKGROUNDS)}")
    missing = [n for n in names if n not in {b.name for b in real_backgrounds(names)}]
    if missing:
        sys.exit(f"background(s) {missing} not found under {shared_data_dir()}")
    return names + [f"phantom:{phantom_seed * 100_000 + j}" for j in range(phantom_patients)]


def _records(a: argparse.Namespace, classes: tuple[str, ...]) -> Iterator[StudyRecord]:
    if a.source == "simulated":
        return _simulated(a, classes, a.backgrounds, a.phantom_patients, a.data_seed, a.per_class)
    if a.source == "phantom":
        return phantom_studies(a.studies, a.data_seed, classes, a.phantom_size, a.phantom_slices, jobs=a.jobs)
    if a.source == "toy":
        return toy_studies(a.studies, a.data_seed, classes)
    if a.data is None:
        sys.exit(f"--source {a.source} needs --data")
    if a.source == "dicom":
        return dicom_studies(a.data, a.labels or a.data / "labels.csv")
    if a.source == "images":
        return image_studies(a.data, a.labels)
    return export_studies(a.data)


#: The arguments that decide a slice set (the data cache's key).
DATA_KEYS = ("source", "data", "labels", "studies", "data_seed", "phantom_size", "phantom_slices", "task", "backgrounds",
             "phantom_patients", "per_class", "phantom_per_class", "size")


def _load(a: argparse.Namespace, classes: tuple[str, ...], seed_offset: int = 0) -> SliceSet:
    t0 = time.time()
    if seed_offset:
        a = argparse.Namespace(**{**vars(a), "data_seed": a.data_seed + seed_offset})
    cache = None
    if getattr(a, "data_cache", None):
        fields = {k: str(getattr(a, k, None)) for k in DATA_KEYS}
        fields["prep"] = repr(_prep(a))
        key = hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]
        cache = a.data_cache / f"slices-{key}.pt"
        if cache.is_file():
            data = torch.load(cache, weights_only=False)
            print(f"data: {data.n_studies} studies, {len(data)} slices from {cache}", flush=True)
            return data
    data = build_slice_set(_records(a, classes), classes, _prep(a))
    if cache is not None:
        with written_whole(cache) as out:
            torch.save(data, out)
    print(f"data: {data.n_studies} studies, {len(data)} slices {data.class_counts()} ({time.time() - t0:.0f} s)",
          flush=True)
    return data


def _prep(a: argparse.Namespace, **overrides: Any) -> PrepConfig:
    """The slice preparation the command's arguments ask for (input size, blanking beyond the lungs)."""
    return PrepConfig(size=a.size, outside_lungs_mm=a.outside_lungs_mm, **overrides)


def _meta(a: argparse.Namespace, name: str, data: SliceSet, metrics: dict[str, Any],
          training: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name, "version": a.version, "classes": list(data.classes), "input_size": [a.size, a.size],
            "training_data_fingerprint": data.fingerprint(), "metrics": metrics, "training": training}
    if a.outside_lungs_mm is not None:
        meta["crop"] = {**DEFAULT_META["crop"], "outside_lungs_mm": a.outside_lungs_mm}
    return meta


def cmd_train(a: argparse.Namespace) -> None:
    """Train one bundle: train/val split by patient, optional held-out test set from a fresh phantom seed."""
    if a.threads:
        torch.set_num_threads(a.threads)
    ctx = setup(a.device)
    classes = TASKS[a.task]
    data = _load(a, classes)
    train_idx, val_idx = group_split(data.study_labels, data.groups, a.val_fraction, seed=a.seed)
    torch.manual_seed(a.seed)
    model = make_model("MultiScaleVGG", len(classes), a.width)
    recipe = _recipe(a)
    deadline = time.time() + a.time_limit if a.time_limit else None
    result = train(model, data.subset(train_idx).labelled().capped(a.max_slices), data.subset(val_idx), recipe,
                   out_dir=a.work_dir, ctx=ctx, resume=a.resume, should_stop=(lambda: time.time() > deadline) if deadline else None)
    teardown(ctx)
    if not ctx.is_main:
        return
    print(f"trained {result.steps} steps (iteration {result.iterations}) in {result.wall_s:.0f} s "
          f"({result.slices_per_s:.1f} slices/s); "
          f"best {result.best}{' (time limit reached)' if result.stopped else ''}", flush=True)
    metrics: dict[str, Any] = {}
    aggregation = dict(DEFAULT_META["aggregation"])
    extra: dict[str, Any] = {}
    if hasattr(result.model, "heads"):  # MultiScaleVGG: calibration and the domain model from its own features
        extra = _calibrate(result.model, data.subset(train_idx), data.subset(val_idx), aggregation)
        aggregation = extra["aggregation"]
        print(f"study rule {aggregation}; calibration: temperature {extra['calibration']['temperature']:.3f}; "
              f"domain threshold {extra['domain']['threshold']:.2f}", flush=True)
    test = _held_out(a, classes)
    if test is not None:
        full = evaluate(result.model, test, aggregation, temperature=extra.get("calibration", {}).get("temperature", 1.0))
        metrics = {"held_out": summary_metrics(full), "held_out_studies": test.n_studies,
                   "held_out_per_class_study": full["study"]["joint"]["per_class"],
                   "held_out_per_scale_study_accuracy": {k: v["accuracy"] for k, v in full["study"].items()},
                   "held_out_note": _held_out_note(a)}
        if extra:
            metrics["held_out_calibration"] = _calibration_report(result.model, test, aggregation,
                                                                  extra["calibration"]["temperature"])
        print(json.dumps({k: metrics[k] for k in ("held_out", "held_out_calibration") if k in metrics}, indent=1),
              flush=True)
    training = {"recipe": recipe.to_dict(), "iterations": result.iterations, "steps": result.steps, "best": result.best,
                "stopped_by_time_limit": result.stopped,
                "wall_s": round(result.wall_s, 1), "slices_per_s": round(result.slices_per_s, 2),
                "threads": torch.get_num_threads(), "device": str(ctx.device), "world_size": ctx.world_size,
                "source": a.source, "studies": data.n_studies, "slices": len(data),
                "class_counts": data.class_counts(), "train_studies": int(len(train_idx)),
                "lung_slices": {"min_lung_fraction": PrepConfig().min_lung_fraction, "max_per_study": a.max_slices},
                "val_studies": int(len(val_idx)),
                "phantom": {"size": a.phantom_size, "n_slices": a.phantom_slices, "seed": a.data_seed}
                if a.source == "phantom" else None,
                "backgrounds": a.backgrounds if a.source == "simulated" else None,
                "simulated": {"per_class": a.per_class, "phantom_patients": a.phantom_patients,
                              "phantom_per_class": a.phantom_per_class, "seed": a.data_seed}
                if a.source == "simulated" else None}
    if a.out.exists() and a.overwrite:
        shutil.rmtree(a.out)
    write_bundle(result.model, a.out, {**_meta(a, a.name, data, metrics, training), **extra})
    print(f"bundle written to {a.out}", flush=True)


def _held_out(a: argparse.Namespace, classes: tuple[str, ...]) -> SliceSet | None:
    """Studies never seen in training or validation: fresh phantom/toy seeds, or held-out real backgrounds (and
    fresh phantom patients) with freshly simulated lesions."""
    if a.source == "simulated":
        if not a.test_backgrounds and not a.test_studies:
            return None
        records = _simulated(a, classes, a.test_backgrounds, a.test_studies, a.data_seed + 1000, a.test_per_class)
        return build_slice_set(records, classes, _prep(a))
    if not a.test_studies:
        return None
    return _load(argparse.Namespace(**{**vars(a), "studies": a.test_studies}), classes, seed_offset=1000)


def _held_out_note(a: argparse.Namespace) -> str:
    if a.source == "simulated":
        return (f"real backgrounds never seen in training ({a.test_backgrounds or 'none'}) and {a.test_studies} "
                f"fresh phantom patients, with freshly simulated lesions (data seed {a.data_seed + 1000})")
    return f"fresh {a.source} studies (data seed {a.data_seed + 1000}), never seen in training or validation"


def _calibrate(model: torch.nn.Module, train_set: SliceSet, val_set: SliceSet,
               aggregation: dict[str, Any]) -> dict[str, Any]:
    """The bundle's ``aggregation`` (study rule) and ``calibration`` (temperature), both chosen on the validation
    studies (:func:`training.calibration.choose_aggregation`), and its ``domain`` block."""
    classes = list(val_set.classes)
    val_logits, val_features = logits_and_features(model, val_set.images)
    _, train_features = logits_and_features(model, train_set.images)
    aggregation, temperature = choose_aggregation(val_logits, val_set.study, val_set.study_labels, classes, aggregation)
    before = study_probabilities(val_logits, val_set.study, classes, aggregation, 1.0)
    after = study_probabilities(val_logits, val_set.study, classes, aggregation, temperature)
    return {"aggregation": aggregation,
            "calibration": {"temperature": round(temperature, 4), "method": "temperature scaling, study-level NLL",
                            "validation_ece_before": round(expected_calibration_error(val_set.study_labels, before), 4),
                            "validation_ece_after": round(expected_calibration_error(val_set.study_labels, after), 4)},
            "domain": fit_domain(train_features, val_features, val_set.study)}


def _calibration_report(model: torch.nn.Module, test: SliceSet, aggregation: dict[str, Any],
                        temperature: float) -> dict[str, float]:
    logits, _ = logits_and_features(model, test.images)
    classes = list(test.classes)
    return {"ece_before": round(expected_calibration_error(
                test.study_labels, study_probabilities(logits, test.study, classes, aggregation, 1.0)), 4),
            "ece_after": round(expected_calibration_error(
                test.study_labels, study_probabilities(logits, test.study, classes, aggregation, temperature)), 4)}


def cmd_crossval(a: argparse.Namespace) -> None:
    if a.threads:
        torch.set_num_threads(a.threads)
    classes = TASKS[a.task]
    data = _load(a, classes)
    models = [ModelSpec("MultiScaleVGG", "MultiScaleVGG", a.width)]
    if not a.no_baseline:
        models.append(ModelSpec("ResNet-18", "resnet18", a.baseline_width))
    config = CrossvalConfig(folds=a.folds, seed=a.seed, models=tuple(models), train=_recipe(a), device=a.device,
                            max_slices=a.max_slices)
    t0 = time.time()
    splits = held_out_splits(data, a.split_by) if a.split_by != "patient" else None
    raw = run_crossval(data, config, a.out, splits=splits)
    title = (f"{a.folds}-fold cross-validation" if splits is None else f"leave-one-{a.split_by}-out")
    write_report(raw, a.out, title=f"{title}, task {a.task}, source {a.source}",
                 setup={"source": a.source, "task": a.task, "studies": data.n_studies, "slices": len(data),
                        "class_counts": data.class_counts(), "input_size": a.size, "recipe": config.train.to_dict(),
                        "models": [m.__dict__ for m in models], "wall_s": round(time.time() - t0, 1),
                        "threads": torch.get_num_threads()})
    print(f"report written to {a.out / 'report.md'}")


def cmd_retrain(a: argparse.Namespace) -> None:
    if a.threads:
        torch.set_num_threads(a.threads)
    config = RetrainConfig(out_dir=a.out, name=a.name, version=a.version, base_bundle=a.base, width=a.width,
                           prep=_prep(a, max_slices=a.max_slices), train=_recipe(a), device=a.device)
    result = retrain(a.data, config, progress=None)
    print(json.dumps(summary_metrics(result.metrics), indent=1))
    print(f"bundle written to {result.bundle_dir}; log {result.log_path}")


def cmd_prior_shift(a: argparse.Namespace) -> None:
    from .prior_shift import prior_shift_report, write_prior_shift

    report = prior_shift_report(a.crossval, a.shifted_class)
    print(json.dumps(report, indent=1))
    if a.bundle:
        write_prior_shift(a.bundle, report, a.version)
        print(f"offset {report['offset']} for {a.shifted_class} written to {a.bundle / 'model.json'}", file=sys.stderr)


def cmd_opacity_fusion(a: argparse.Namespace) -> None:
    from .opacity_fusion import opacity_fusion_report, write_opacity_fusion

    report = opacity_fusion_report(a.crossval)
    print(json.dumps(report, indent=1))
    if a.bundle:
        write_opacity_fusion(a.bundle, report, a.version)
        print(f"opacity fusion written to {a.bundle / 'model.json'}", file=sys.stderr)


def cmd_check_real(a: argparse.Namespace) -> None:
    from .checks import main_check

    main_check(a.model, a.out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one bundle")
    _add_source(p, studies=60)
    _add_recipe(p, iterations=2000, val_every=100, patience=500)
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--name", default="custom")
    p.add_argument("--version", default="1")
    p.add_argument("--test-studies", type=int, default=0,
                   help="phantom/toy: held-out studies from a fresh seed; simulated: fresh phantom patients held out")
    p.add_argument("--test-per-class", type=int, default=4, help="simulated: held-out studies per class per background")
    _add_bundle_run(p, "var/training/run")
    p.set_defaults(func=cmd_train)

    # The shipped bundles: the train command with pinned values (see each bundle's MODEL_CARD.md).
    for command, preset in SHIPPED.items():
        p = sub.add_parser(command, help=f"train the shipped models/{preset['name']} bundle (fixed seeds)")
        _add_source(p, studies=preset.get("studies", 60))
        _add_recipe(p, iterations=preset["iterations"], val_every=preset["val_every"], patience=preset["patience"])
        p.add_argument("--out", type=Path, default=Path("models") / preset["name"])
        p.add_argument("--overwrite", action="store_true", default=True, help=argparse.SUPPRESS)
        p.add_argument("--test-studies", type=int, default=preset.get("test_studies", 60))
        p.add_argument("--test-per-class", type=int, default=4, help="simulated: held-out studies per class per background")
        _add_bundle_run(p, f"var/training/{preset['name']}")
        p.set_defaults(func=cmd_train, **preset)

    p = sub.add_parser("crossval", help="k-fold patient-level cross-validation with report")
    _add_source(p, studies=60)
    _add_recipe(p, iterations=600, val_every=100, patience=300)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--no-baseline", action="store_true", help="skip the ResNet-18 baseline")
    p.add_argument("--split-by", choices=["patient", "source", "background"], default="patient",
                   help="patient: grouped k-fold; source: leave one source out (real backgrounds vs phantom); "
                        "background: leave one real background patient out")
    p.add_argument("--baseline-width", type=float, default=1.0)
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser("retrain", help="train a bundle on a training-ready export")
    _add_recipe(p, iterations=2000, val_every=100, patience=500)
    p.add_argument("--data", type=Path, required=True, help="export folder")
    p.add_argument("--base", help="starting bundle (name or folder); scratch when absent")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="retrained")
    p.add_argument("--version", default="1")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("prior-shift", help="fit a bundle's study prior shift on a leave-one-background-out "
                                           "cross-validation's held-out studies (nested effect printed)")
    p.add_argument("--crossval", type=Path, required=True, help="crossval report folder (its folds.json)")
    p.add_argument("--bundle", type=Path, help="write the fitted offset to this bundle's model.json")
    p.add_argument("--shifted-class", default="NP")
    p.add_argument("--version", help="with --bundle: the bundle's new version (its decisions change)")
    p.set_defaults(func=cmd_prior_shift)

    p = sub.add_parser("opacity-fusion", help="fit a bundle's study decision on its probabilities and the HU opacity "
                                             "on a leave-one-background-out cross-validation's held-out studies")
    p.add_argument("--crossval", type=Path, required=True,
                   help="crossval report folder (its folds.json; the studies' opacity is kept there)")
    p.add_argument("--bundle", type=Path, help="write the fitted fusion to this bundle's model.json")
    p.add_argument("--version", help="with --bundle: the bundle's new version (its decisions change)")
    p.set_defaults(func=cmd_opacity_fusion)

    p = sub.add_parser("check-real", help="score every real scan of the shared data folder with a bundle")
    p.add_argument("--model", default="default", help="bundle name or folder")
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    p.set_defaults(func=cmd_check_real)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
