"""Cross-cutting pieces every app uses and that import none of the apps: the audit trail, optimistic concurrency
and the base of the Celery tasks that drive a ``Job``.

They lived inside the apps that used them first (``review``, ``jobs``), which made accounts, curation and registry
import review; here the apps depend on them and never the other way (``tests/webapp/test_app_layering.py``). The
models they write are looked up by label through Django's app registry.
"""
