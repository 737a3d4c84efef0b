"""Evaluation: accuracy / ROC AUC and PGR with paired-bootstrap intervals."""
from .metrics import accuracy, classification_metrics, roc_auc
from .pgr import PGRResult, pgr, pgr_with_ci

__all__ = ["PGRResult", "accuracy", "classification_metrics", "pgr", "pgr_with_ci", "roc_auc"]
