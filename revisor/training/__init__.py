"""Datasets, LoRA fine-tuning, offline evaluation (Exact Match) and reports."""
