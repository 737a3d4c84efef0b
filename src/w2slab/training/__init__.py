"""Training: heads on frozen features and the weak-to-strong losses."""
from .heads import HEADS, LogisticHead, MLPHead, TorchHead
from .losses import LOSSES, make_loss

__all__ = ["HEADS", "LOSSES", "LogisticHead", "MLPHead", "TorchHead", "make_loss"]
