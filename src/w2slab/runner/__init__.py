"""Runner: configuration, the stage cache, the protocol and the results store."""
from .config import ExperimentConfig
from .experiment import ExperimentResult, run_experiment
from .store import ResultsStore

__all__ = ["ExperimentConfig", "ExperimentResult", "ResultsStore", "run_experiment"]
