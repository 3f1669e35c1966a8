"""Load: 50 simulated reviewers for 60 s against gunicorn on loopback, and the worklist's query count at scale.

A throw-away installation: a fresh PostgreSQL database (``lungscope_load``, recreated), storage in a temp folder,
``--phantoms`` phantom studies ingested and analysed in-process by a tiny random-weight model (saliency on every
slice, so the map PNGs are served from stored maps), a few human boxes per study, and bulk-created rows until the
worklist holds ``--studies`` studies. Then ``gunicorn webapp.wsgi -w 2 --threads 4`` serves it and locust runs
headless as a subprocess (``bench/locustfile.py``: worklist, study detail and analysis, WADO-RS frames, WADO-URI,
map PNGs, box edits with versions). A 409 from concurrent box edits is an expected outcome, reported on its own
line. Before the load, the worklist endpoint's query count is measured in-process with 10 and with ``--studies``
studies; the two must be equal.

Prints the worklist's in-process p50/p95 at ``--studies`` (random offsets, no HTTP), then per endpoint p50/p95 (ms),
requests and errors, the total requests/s, and writes bench/out/load.json (``--no-locust``: the in-process part only).
Exit status 1 when a request failed or the query counts differ.

    python bench/load.py [--users 50 --spawn-rate 10 --run-time 60s --studies 10000 --phantoms 4]
"""
from __future__ import annotations

import argparse
import csv
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
PYTHON = sys.executable
WORKLIST_URL = "/api/studies/?limit=50&ordering=-ai_uncertainty"


def bulk_worklist(total: int, decided_by) -> None:
    """Add bulk-created studies until there are ``total``: each with two succeeded runs (the worklist shows the
    latest; one study in 20 outside the model's experience) and every other one with a decision, so every worklist
    column has something to join."""
    from django.db import connection

    from webapp.analysis.models import AnalysisRun
    from webapp.review.models import Decision
    from webapp.analysis.columns import refresh_ai_columns
    from webapp.studies.models import Patient, Study

    start = Study.objects.count()
    patients = Patient.objects.bulk_create(
        (Patient(patient_id=f"BULK{i}", name=f"Bulk^{i}") for i in range(start, total)), batch_size=2000)
    studies = Study.objects.bulk_create(
        (Study(study_instance_uid=f"2.25.{9000000 + i}", patient=p, study_date="20240101", status="ai_done",
               accession_number=f"B{i}") for i, p in enumerate(patients, start=start)), batch_size=2000)
    AnalysisRun.objects.bulk_create(
        (AnalysisRun(study=s, model_name="bulk", status="succeeded", label=label, probability=p, uncertainty=1 - p,
                     opacity_percent=(n % 40) / 2, domain_outside=n % 20 == 0)
         for n, s in enumerate(studies) for label, p in (("CAP", 0.6), ("COVID", 0.5 + (n % 50) / 100))),
        batch_size=4000)
    Decision.objects.bulk_create((Decision(study=s, label="np", decided_by=decided_by) for s in studies[::2]),
                                 batch_size=2000)
    refresh_ai_columns(s.pk for s in studies)  # bulk_create bypasses analysis.services, which keeps them current
    with connection.cursor() as cursor:
        # Autovacuum analyses a table within a minute of a bulk load; until then the planner takes the new tables
        # for empty and a worklist page costs seconds instead of milliseconds. Do now what the server would do.
        cursor.execute("ANALYZE")


def worklist_queries(client) -> tuple[int, int]:
    """Queries one worklist page costs, and the count it reports (after a first request warms per-user caches)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(WORKLIST_URL)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(WORKLIST_URL)
    assert response.status_code == 200, response.content[:300]
    return len(queries), response.json()["count"]


def worklist_latency(client, total: int, pages: int = 100) -> dict[str, float]:
    """p50/p95 (ms) of worklist pages at random offsets, in-process (no HTTP, no locust on the same cores): the
    query plan and serializer cost alone."""
    import random
    import statistics

    rng = random.Random(0)
    times = []
    for _ in range(pages):
        started = time.perf_counter()
        response = client.get(f"{WORKLIST_URL}&offset={rng.randrange(0, max(total - 50, 1))}")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))],
            "load_average_1min": os.getloadavg()[0]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def environment(var: Path, database_url: str) -> dict[str, str]:
    """The installation's settings, shared by this process (seeding) and gunicorn: production mode on loopback."""
    return {"DATABASE_URL": database_url, "LUNGSCOPE_VAR_DIR": str(var), "LUNGSCOPE_STORAGE_DIR": str(var / "storage"),
            "LUNGSCOPE_ANALYZE_ON_INGEST": "false", "LUNGSCOPE_MODEL": str(var / "tiny"), "LUNGSCOPE_SALIENCY": "all",
            "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}


def seed(var: Path, phantoms: int, studies: int) -> tuple[dict, dict[str, int]]:
    """Migrate, ingest and analyse the phantoms, add boxes and bulk studies; returns the locust plan and the
    worklist query counts at 10 studies and at ``studies``."""
    import django

    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"  # analyses run here, in-process, when enqueued
    sys.path.insert(0, str(REPO))
    django.setup()
    import torch
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from inference.bundle import save_bundle
    from inference.classifier import MultiScaleVGG
    from training.phantom import generate_study, write_dicom_series
    from webapp.accounts.roles import ANNOTATOR, assign_role
    from webapp.analysis.models import AnalysisRun
    from webapp.analysis.tasks import enqueue_analysis
    from webapp.review.models import Box
    from webapp.studies.ingest import IngestBatch
    from webapp.studies.models import Instance, Study

    call_command("migrate", verbosity=0)
    torch.manual_seed(0)
    save_bundle(MultiScaleVGG(num_classes=3, width=0.125), var / "tiny",
                {"name": "tiny", "version": "load", "classes": ["NP", "CAP", "COVID"]})
    reviewer = get_user_model().objects.create_user("load-reviewer", password="load-reviewer-pass")
    assign_role(reviewer, ANNOTATOR)
    plan: dict = {"token": Token.objects.create(user=reviewer).key, "studies": []}
    for n in range(phantoms):
        files = write_dicom_series(generate_study(100 + n, ("COVID", "CAP", "NP")[n % 3], n_slices=16, size=128),
                                   var / f"phantom-{n}")
        with IngestBatch() as batch:
            for path in files:
                batch.add_file(path.read_bytes(), path.name)
        study = Study.objects.get(pk=batch.results[0].study_id)
        enqueue_analysis(study)
        run = AnalysisRun.objects.filter(study=study).latest("pk")
        if run.status != AnalysisRun.Status.SUCCEEDED:
            raise RuntimeError(f"analysis of phantom {n} {run.status}: {run.error}")
        instances = list(Instance.objects.filter(series__study=study).order_by("instance_number"))
        boxes = [Box.objects.create(study=study, sop_instance_uid=instances[i].sop_instance_uid, x0=10, y0=10, x1=30,
                                    y1=30, label=Box.Label.OTHER, provenance=Box.Provenance.HUMAN,
                                    created_by=reviewer, updated_by=reviewer).pk for i in (4, 8, 12)]
        plan["studies"].append({
            "id": study.pk, "uid": study.study_instance_uid, "series": instances[0].series.series_instance_uid,
            "instances": [i.sop_instance_uid for i in instances], "run": run.pk, "boxes": boxes,
            "map_slices": list(run.slices.exclude(maps="").values_list("index", flat=True)) or [0],
        })

    client = APIClient()
    client.force_authenticate(reviewer)
    counts = {}
    for total in (10, studies):
        bulk_worklist(total, reviewer)
        queries, listed = worklist_queries(client)
        assert listed == total, (listed, total)
        counts[str(total)] = queries
    plan["worklist_in_process"] = worklist_latency(client, studies)
    print("worklist in-process at {0} studies: p50 {p50_ms:.1f} ms, p95 {p95_ms:.1f} ms "
          "(load average {load_average_1min:.1f})".format(studies, **plan["worklist_in_process"]), flush=True)
    plan["worklist_count"] = studies
    del os.environ["CELERY_TASK_ALWAYS_EAGER"]  # seeding only: gunicorn inherits this environment
    return plan, counts


def serve(env: dict[str, str], var: Path, port: int) -> subprocess.Popen:
    """gunicorn with the app preloaded (torch and the URL conf imported once, in the master)."""
    config = var / "gunicorn_load.py"
    config.write_text("preload_app = True\n\n\ndef when_ready(server):\n"
                      "    from django.urls import get_resolver\n\n    get_resolver().url_patterns\n")
    server = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "webapp.wsgi", "-c", str(config), "-w", "2", "--threads", "4",
         "-b", f"127.0.0.1:{port}", "--timeout", "120"],
        cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=open(var / "gunicorn.log", "wb"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server
        if server.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"gunicorn did not start:\n{(var / 'gunicorn.log').read_text()[-3000:]}")


def run_locust(args, env: dict[str, str], var: Path, port: int, plan_path: Path) -> Path:
    prefix = var / "locust"
    subprocess.run(
        [PYTHON, "-m", "locust", "-f", str(REPO / "bench" / "locustfile.py"), "--headless", "-u", str(args.users),
         "-r", str(args.spawn_rate), "--run-time", args.run_time, "--host", f"http://127.0.0.1:{port}",
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
        cwd=REPO, env={**os.environ, **env, "LOAD_PLAN": str(plan_path)}, check=False, stdout=subprocess.DEVNULL,
        stderr=open(var / "locust.log", "wb"))  # the figures come from the CSV files
    return prefix


def report(prefix: Path, counts: dict[str, int]) -> dict:
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    endpoints = {r["Name"]: {"requests": int(r["Request Count"]), "errors": int(r["Failure Count"]),
                             "p50_ms": float(r["50%"]), "p95_ms": float(r["95%"]),
                             "requests_per_s": float(r["Requests/s"])} for r in rows}
    total = endpoints.pop("Aggregated")
    failures = [{"endpoint": r["Name"], "error": r["Error"], "occurrences": int(r["Occurrences"])}
                for r in csv.DictReader(open(f"{prefix}_failures.csv"))]
    print(f"{'endpoint':34} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7}")
    for name, e in sorted(endpoints.items()):
        print(f"{name:34} {e['requests']:8d} {e['errors']:6d} {e['p50_ms']:7.0f} {e['p95_ms']:7.0f}")
    print(f"{'total':34} {total['requests']:8d} {total['errors']:6d} {total['p50_ms']:7.0f} {total['p95_ms']:7.0f}")
    print(f"throughput: {total['requests_per_s']:.1f} requests/s")
    stale = endpoints.get("PATCH box [409 stale version]", {}).get("requests", 0)
    print(f"409 stale box versions (expected under concurrent edits): {stale}")
    print("errors: none" if not failures else "errors:\n" + "\n".join(
        f"  {f['occurrences']} x {f['endpoint']}: {f['error']}" for f in failures))
    print("worklist queries per page: " + ", ".join(f"{n} studies: {q}" for n, q in counts.items()))
    return {"endpoints": endpoints, "total": total, "stale_409": stale, "failures": failures,
            "worklist_queries": counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--run-time", default="60s")
    parser.add_argument("--studies", type=int, default=10000)
    parser.add_argument("--phantoms", type=int, default=4)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/lungscope_load")
    parser.add_argument("--no-locust", action="store_true",
                        help="seed, count queries and time the worklist in-process only (a shared machine's load "
                             "swamps locust's figures)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lungscope-load-") as tmp:
        var = Path(tmp)
        fresh_database(args.database_url)
        env = environment(var, args.database_url)
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings.demo"
        started = time.monotonic()
        plan, counts = seed(var, args.phantoms, args.studies)
        print(f"seeded {args.studies} studies ({args.phantoms} analysed phantoms) "
              f"in {time.monotonic() - started:.0f} s")
        plan_path = var / "plan.json"
        plan_path.write_text(json.dumps(plan))
        if args.no_locust:
            return 0 if len(set(counts.values())) == 1 else 1
        port = free_port()
        server = serve(env, var, port)
        try:
            figures = report(run_locust(args, env, var, port, plan_path), counts)
        finally:
            server.terminate()
            server.wait(30)
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps({"args": vars(args), **figures,
                                               "worklist_in_process": plan["worklist_in_process"]}, indent=2))
    equal = len(set(counts.values())) == 1
    print("worklist query count constant: " + ("yes" if equal else "NO"))
    return 0 if equal and not figures["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
