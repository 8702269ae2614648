"""Metrics and reports for evaluating a category model."""

from prodcat.evaluation.metrics import compute_metrics, top_k_accuracy
from prodcat.evaluation.report import write_report

__all__ = ["compute_metrics", "top_k_accuracy", "write_report"]
