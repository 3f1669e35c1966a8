"""The model registry: versions and which one is active (promote / rollback, audited), retraining runs on the
``gpu`` queue that turn a DatasetVersion into a new version, and batch re-analysis with the active version."""
