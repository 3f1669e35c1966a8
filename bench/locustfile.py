"""Locust users for ``bench/load.py``: reviewers working through the worklist (never imported by pytest: locust
monkeypatches the standard library with gevent on import).

The plan (``LOAD_PLAN``, a JSON file written by load.py) names the token, the analysed studies with their
instances, runs and boxes. Each simulated reviewer lists the worklist, opens a study and its analysis, scrolls
frames (WADO-RS frames and WADO-URI), looks at saliency maps and edits a box with the version it last read. A 409
from a concurrent edit is an expected outcome: it is reported under its own name ("PATCH box [409 stale]"), not as
a failure.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import HttpUser, between, task

PLAN = json.loads(Path(os.environ["LOAD_PLAN"]).read_text())
FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"'


class Reviewer(HttpUser):
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Token {PLAN['token']}"
        self.study = random.choice(PLAN["studies"])

    @task(3)
    def worklist(self) -> None:
        offset = random.randrange(0, PLAN["worklist_count"] - 50)
        self.client.get(f"/api/studies/?limit=50&offset={offset}&ordering=-ai_uncertainty", name="GET worklist")

    @task(2)
    def open_study(self) -> None:
        self.study = random.choice(PLAN["studies"])
        self.client.get(f"/api/studies/{self.study['id']}/", name="GET study detail")
        self.client.get(f"/api/studies/{self.study['id']}/analysis/", name="GET study analysis")

    @task(6)
    def frame(self) -> None:
        study, instance = self.study, random.choice(self.study["instances"])
        self.client.get(f"/dicomweb/studies/{study['uid']}/series/{study['series']}/instances/{instance}/frames/1",
                        headers={"Accept": FRAMES_ACCEPT}, name="GET WADO-RS frame")

    @task(2)
    def wado_uri(self) -> None:
        study, instance = self.study, random.choice(self.study["instances"])
        self.client.get(f"/wado?requestType=WADO&studyUID={study['uid']}&seriesUID={study['series']}"
                        f"&objectUID={instance}", name="GET WADO-URI")

    @task(3)
    def saliency_map(self) -> None:
        index = random.choice(self.study["map_slices"])
        kind = random.choice(["joint", "cam4", "lung"])
        self.client.get(f"/api/analysis-runs/{self.study['run']}/slices/{index}/maps/{kind}.png", name="GET map PNG")

    @task(2)
    def edit_box(self) -> None:
        box_id = random.choice(self.study["boxes"])
        version = self.client.get(f"/api/boxes/{box_id}/", name="GET box").json()["version"]
        x0, y0 = random.randrange(0, 20), random.randrange(0, 20)
        edit = {"x0": x0, "y0": y0, "x1": x0 + random.randrange(4, 40), "y1": y0 + random.randrange(4, 40),
                "version": version}
        with self.client.patch(f"/api/boxes/{box_id}/", json=edit, name="PATCH box", catch_response=True) as reply:
            if reply.status_code == 409:  # another reviewer saved first: expected, counted on its own line
                reply.request_meta["name"] = "PATCH box [409 stale version]"
                reply.success()
