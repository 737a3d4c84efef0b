"""Evaluation: accuracy / ROC AUC, imitation of the supervisor, PGR with paired-bootstrap intervals,
and statistics across tasks."""
from .metrics import accuracy, classification_metrics, imitation_metrics, roc_auc
from .pgr import PGRResult, pgr, pgr_with_ci
from .stats import compare_paired, median_with_ci

__all__ = ["PGRResult", "accuracy", "classification_metrics", "compare_paired", "imitation_metrics",
           "median_with_ci", "pgr", "pgr_with_ci", "roc_auc"]
