"""Sweeps: a grid of full run configs, validated up front, cached by content hash in MLflow."""
