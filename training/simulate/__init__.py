"""Simulated disease in real and phantom chest CT, and scanner randomisation (the classifier's training data)."""
