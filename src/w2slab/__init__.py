"""w2slab: a lab for weak-to-strong generalisation and model-driven supervision.

Importing w2slab is cheap; the heavy parts (torch, transformers) load when first used:

    from w2slab import run_experiment
    result = run_experiment(task="sst2", weak="minilm", strong="mpnet", seeds=3)
    print(result.table())

    from w2slab import run_sweep              # a grid from a TOML file (see w2slab.runner.sweep)
    run_sweep("sweeps/demo.toml", executor="local")
"""
__version__ = "0.1.0"

_LAZY = {
    "run_experiment": "w2slab.runner.experiment",
    "ExperimentConfig": "w2slab.runner.config",
    "ExperimentResult": "w2slab.runner.experiment",
    "ResultsStore": "w2slab.runner.store",
    "load_task": "w2slab.tasks",
    "make_featurizer": "w2slab.models",
    "pgr_with_ci": "w2slab.evaluation.pgr",
    "Sweep": "w2slab.runner.sweep",
    "plan_sweep": "w2slab.runner.driver",
    "run_sweep": "w2slab.runner.driver",
    "sweep_status": "w2slab.runner.driver",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'w2slab' has no attribute {name!r}")


__all__ = sorted(_LAZY)
