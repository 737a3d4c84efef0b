"""Supervisors: anything that emits soft labels P(class = 1) for the student's training items.

Issue-3 scope: a weak model trained on ground truth of half A (``weak_model``). Ensembles, self-training and
prompted LMs register here later under the same contract: ``fit(X, y) -> self``, ``predict_proba(X) -> (n, 2)``.
"""
from ..registry import Registry
from .weak_model import WeakModelSupervisor

SUPERVISORS: Registry[type] = Registry("supervisor")
SUPERVISORS.register("weak_model", WeakModelSupervisor)

__all__ = ["SUPERVISORS", "WeakModelSupervisor"]
