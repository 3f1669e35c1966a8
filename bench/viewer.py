"""Viewer speed in a real browser: time to the first rendered image of a 128-slice study, and the scrolling rate
through every slice with the saliency heatmap on. Targets: first image < 1.5 s, scrolling >= 20 slices/s.

Standalone by default: a throw-away installation (SQLite and storage in a temp folder) with one phantom COVID study
ingested like an upload and analysed by a tiny random model, served by gunicorn. The maps are filled in from the
phantom's lesion and lung masks rather than computed (Integrated Gradients for 128 slices takes minutes on a CPU and
is the inference benchmark's business): this measures the viewer. ``--series DIR`` ingests a real series instead
(e.g. the JPEG 2000 LIDC-IDRI scans in ``../shared/data/real-ct/lidc-idri``), its maps made from its own HU (lung
parenchyma hot). Or point it at a running server:

    python bench/viewer.py [--slices 128 --size 512 | --series DIR] [--url http://host:8000 --username u
                           --password p --study ID]

Each phase prints as it ends, and a slice that does not render within ``STEP_TIMEOUT_MS`` stops the run with its
number (rather than waiting forever).

Chromium is Debian's (/usr/bin/chromium), WebGL2 in software (SwiftShader) unless the machine has a GPU. Writes the
figures as JSON to bench/out/viewer.json.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
TARGET_FIRST_IMAGE_MS, TARGET_SLICES_PER_S = 1500, 20
USER, PASSWORD = "bench", "bench-password-1"
STEP_TIMEOUT_MS = 60_000

# In-page: step through the stack one slice at a time, each step done when the image and the heatmap are drawn.
SCROLL_JS = """async (timeoutMs) => {
  const info = document.querySelector('#slice-info');
  const maps = document.querySelector('.maps-layer');
  const until = (ok) => new Promise((done, fail) => {
    const t0 = performance.now();
    const tick = () => (ok() ? done() : performance.now() - t0 > timeoutMs
      ? fail(new Error(`slice ${info.dataset.index}: image or heatmap not drawn within ${timeoutMs} ms`))
      : requestAnimationFrame(tick));
    tick();
  });
  const key = (k) => document.body.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true }));
  const shown = (i) => () => info.dataset.index === String(i) && maps.dataset.complete === 'true';
  key('Home');
  await until(shown(0));
  const n = Number(document.querySelector('#slice-slider').max) + 1;
  const t0 = performance.now();
  for (let i = 1; i < n; i++) { key('ArrowDown'); await until(shown(i)); }
  return { slices: n - 1, seconds: (performance.now() - t0) / 1000 };
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_installation(var: Path, slices: int, size: int, series: Path | None = None) -> tuple[dict[str, str], int]:
    """Migrate a fresh SQLite database, add the bench user and one analysed phantom study; returns (env, study id)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}", "LUNGSCOPE_VAR_DIR": str(var),
           "LUNGSCOPE_STORAGE_DIR": str(var / "storage"), "LUNGSCOPE_ANALYZE_ON_INGEST": "false",
           "LUNGSCOPE_SALIENCY": "none", "LUNGSCOPE_MODEL": str(var / "tiny"), "CELERY_BROKER_URL": "filesystem://",
           "DJANGO_DEBUG": "1", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.demo")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from webapp.accounts.roles import ADMIN, assign_role

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(USER, password=PASSWORD)
    assign_role(user, ADMIN)
    return env, analysed_study(var, slices, size, series)


def real_series_maps(series: Path) -> dict[str, tuple]:
    """Stand-in maps for a real series, by SOP Instance UID: lung parenchyma (-950..-400 HU) hot, the body faint."""
    import numpy as np

    from inference.io import load_study

    volume = load_study(series)
    out = {}
    for uid, hu in zip(volume.sop_instance_uids, volume.array, strict=True):
        lung = ((hu > -950) & (hu < -400)).astype(np.float32)
        out[uid] = (lung + 0.2 * (hu > -400), lung)
    return out


def analysed_study(var: Path, slices: int, size: int, series: Path | None = None) -> int:
    import numpy as np
    import torch

    from inference.bundle import save_bundle
    from inference.classifier import MultiScaleVGG
    from inference.pipeline import SliceMaps
    from inference.preprocess import CropGeometry
    from training.phantom import generate_study, write_dicom_series
    from webapp.analysis import maps
    from webapp.analysis.models import AnalysisRun, SliceResult
    from webapp.analysis.tasks import enqueue_analysis
    from webapp.celery import app
    from webapp.studies.ingest import ingest_file
    from webapp.studies.models import Study

    torch.manual_seed(0)
    save_bundle(MultiScaleVGG(num_classes=3, width=0.125), var / "tiny",
                {"name": "tiny", "version": "bench", "classes": ["NP", "CAP", "COVID"]})
    t = time.perf_counter()
    phantom = None if series else generate_study(2020, "COVID", n_slices=slices, size=size)
    files = sorted(f for f in series.rglob("*.dcm")) if series else write_dicom_series(phantom, var / "dicom")
    results = []
    for path in files:
        with open(path, "rb") as fh:
            results.append(ingest_file(fh, path.name, source_label="COVID"))
    landed = [r for r in results if r.landed]
    if not landed:
        raise RuntimeError(f"nothing from {series} was stored: {results[0].reason if results else 'no files'}")
    print(f"ingested {len(landed)} of {len(results)} files in {time.perf_counter() - t:.0f} s", flush=True)
    study = Study.objects.get(study_instance_uid=landed[0].study_instance_uid)
    app.conf.task_always_eager = True
    enqueue_analysis(study)
    run = AnalysisRun.objects.get(study=study)
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    real = real_series_maps(series) if series else {}
    for result in SliceResult.objects.filter(run=run):
        if series:
            heat, lung = real[result.sop_instance_uid]
        else:
            lung = phantom.lung_mask[result.index]
            heat = phantom.lesion_mask[result.index].astype(np.float32) + 0.2 * lung
        rows, cols = heat.shape  # the maps given at the slice's own size: a crop of the whole slice, not resized
        fake = SliceMaps(np.stack([heat] * 7).astype(np.float32), CropGeometry(0, 0, rows, cols, (rows, cols), rows),
                         np.ones((rows, cols), dtype=bool), "COVID")
        opacity = (heat > 0.5).astype(np.uint8)  # the viewer's opacity overlay: the lesion, or the hot part of the map
        name = maps.save_slice_maps(run.pk, result.index, maps.pack(fake, lung, opacity))
        SliceResult.objects.filter(pk=result.pk).update(maps=name)
    print(f"prepared study {study.pk} ({'real series' if series else 'phantom'}) in {time.perf_counter() - t:.0f} s",
          flush=True)
    return study.pk


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """gunicorn as in ``make demo``; whitenoise serves the built frontend straight from webapp/static (DEBUG)."""
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "webapp.wsgi", "-b", f"127.0.0.1:{port}", "--workers", "2",
                             "--threads", "4", "--timeout", "120"], cwd=REPO, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-2000:]}")


def measure(url: str, username: str, password: str, study: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        for _ in range(4):  # every server worker past its first request (imports): "cold" is the browser's cache
            page.request.get(f"{url}/api/studies/{study}/analysis/")

        def first_image_ms() -> float:
            page.goto(f"{url}/studies/{study}/")
            page.wait_for_function("() => performance.getEntriesByName('lungscope:first-image').length > 0", timeout=60_000)
            return page.evaluate("() => performance.getEntriesByName('lungscope:first-image')[0].startTime")

        cold = first_image_ms()  # nothing cached: the bundle is fetched and compiled
        print(f"first image (cold) {cold:.0f} ms", flush=True)
        page.wait_for_selector("#viewer-app[data-ready=true]")
        renderer = page.get_attribute("#viewer-app", "data-renderer")
        slices = int(page.get_attribute("#slice-slider", "max")) + 1
        page.check("input[data-map=joint]")
        # The first pass waits for images and maps still arriving (prefetch runs meanwhile); once it has drawn every
        # slice, every image has been loaded, and the second pass gives the steady rate.
        first_pass = page.evaluate(SCROLL_JS, STEP_TIMEOUT_MS)
        print(f"first pass: {first_pass['slices']} slices in {first_pass['seconds']:.1f} s", flush=True)
        second_pass = page.evaluate(SCROLL_JS, STEP_TIMEOUT_MS)
        print(f"second pass: {second_pass['slices']} slices in {second_pass['seconds']:.1f} s", flush=True)
        warm = first_image_ms()  # the study reopened, the server idle: the bundle comes from the browser cache
        browser.close()
    rate = lambda p: p["slices"] / p["seconds"]  # noqa: E731
    return {"renderer": renderer, "first_image_ms_cold": round(cold), "first_image_ms_warm": round(warm),
            "scroll_first_pass_slices_per_s": round(rate(first_pass), 1),
            "scroll_slices_per_s": round(rate(second_pass), 1), "slices": slices}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server (else a throw-away one is started)")
    p.add_argument("--username", default=USER)
    p.add_argument("--password", default=PASSWORD)
    p.add_argument("--study", type=int, help="study id on --url")
    p.add_argument("--slices", type=int, default=128)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--series", type=Path, help="a real DICOM series folder to ingest instead of the phantom")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "viewer.json")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"skipped: {CHROMIUM} is absent (scripts/ensure_services.sh installs it)")
        return 0
    if not (REPO / "webapp/static/viewer/viewer.js").exists():
        print("the frontend is not built: run `make frontend`")
        return 1
    server = None
    with tempfile.TemporaryDirectory(prefix="lungscope-bench-") as tmp:
        try:
            if args.url:
                if args.study is None:
                    p.error("--url needs --study")
                url, study = args.url.rstrip("/"), args.study
            else:
                env, study = prepare_installation(Path(tmp), args.slices, args.size, args.series)
                port = free_port()
                server = start_server(env, port, Path(tmp) / "gunicorn.log")
                url = f"http://127.0.0.1:{port}"
            figures = measure(url, args.username, args.password, study)
        finally:
            if server is not None:
                os.killpg(server.pid, 15)
                server.wait(timeout=30)
    figures.update(targets={"first_image_ms": TARGET_FIRST_IMAGE_MS, "scroll_slices_per_s": TARGET_SLICES_PER_S},
                   size=args.size if not (args.url or args.series) else None,
                   series=str(args.series) if args.series else None, load_average_1min=os.getloadavg()[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    ok = figures["first_image_ms_warm"] < TARGET_FIRST_IMAGE_MS and figures["scroll_slices_per_s"] >= TARGET_SLICES_PER_S
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
