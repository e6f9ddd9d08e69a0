"""Training and evaluation: data pipeline, samplers, checkpoints, metrics, plots and the training loop."""
