"""The one failure policy of every job task (``webapp.core.jobtask.JobTask``), on real Job rows: transient errors
are retried with back-off until they pass or the retries run out, an input error fails at once with its message,
and a bug fails at once with its traceback. Run eagerly (``apply``): Celery runs each retry in turn."""
from __future__ import annotations

import pytest

from webapp.celery import app
from webapp.core.jobtask import JobTask
from webapp.jobs.models import Job


class BadInput(ValueError):
    pass


@app.task(bind=True, base=JobTask, name="tests.job_policy.flaky", permanent_errors=(BadInput,))
def flaky(self, job_id: int, failures: list[str]) -> None:
    """Fails with ``failures[attempt]`` (a kind of error) while there is one, then finishes the job."""
    job = Job.objects.get(pk=job_id)
    with self.running(job):
        attempt = self.request.retries
        if attempt < len(failures):
            raise {"transient": ConnectionError, "input": BadInput, "bug": KeyError}[failures[attempt]](f"try {attempt}")
        job.finish({"attempt": attempt}, message="done")


def run(failures: list[str]) -> Job:
    job = Job.objects.create(kind=Job.Kind.INGEST)
    flaky.apply(args=[job.pk, failures])
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_transient_errors_are_retried_until_they_pass():
    job = run(["transient", "transient"])
    assert (job.status, job.attempts, job.result) == (Job.Status.SUCCEEDED, 3, {"attempt": 2})


@pytest.mark.django_db
def test_transient_errors_fail_the_job_once_the_retries_run_out():
    job = run(["transient"] * 10)
    assert (job.status, job.attempts) == (Job.Status.FAILED, JobTask.max_retries + 1)
    assert job.message == f"try {JobTask.max_retries} (gave up after {JobTask.max_retries + 1} attempts)"


@pytest.mark.django_db
def test_an_input_error_fails_at_once_with_its_message():
    job = run(["input", "transient"])
    assert (job.status, job.attempts, job.error) == (Job.Status.FAILED, 1, "try 0")


@pytest.mark.django_db
def test_a_bug_fails_at_once_with_its_traceback():
    job = run(["bug"])
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    assert job.message == "internal error: KeyError: 'try 0'" and "Traceback" in job.error
