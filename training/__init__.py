"""Training code: synthetic data, trainers and evaluation for the lungscope models."""
