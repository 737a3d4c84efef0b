"""Executors: run a DAG of jobs and yield each outcome as it finishes.

- ``serial``: in this process, in order (debugging, or one core);
- ``local``: a pool of worker processes sized to the machine (processes × torch threads ≤ cores); feature
  jobs run first in the driver with every core, since one model's forward pass already uses them all;
- ``ray``: every job a Ray task whose dependencies are the ObjectRefs of its upstream jobs, on a running
  cluster (``address``) or a local Ray started here. Workers on other machines must see the same cache
  directory (a shared filesystem); the driver alone writes the results store.

A failed job fails its dependents (with the upstream error) and everything else carries on.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
from collections.abc import Iterator

from ..errors import ConfigError
from ..registry import Registry
from .jobs import Job, execute, warm_up

EXECUTORS: Registry[type] = Registry("executor")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass
class Outcome:
    """A finished job: its value (None unless a run), wall seconds inside the job, or the error text."""

    job: Job
    value: object = None
    seconds: float = 0.0
    error: str | None = None


def machine_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _DagExecutor:
    """Shared scheduling: submit jobs whose dependencies are done, fail the dependents of failures."""

    processes = 1

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        by_id = {j.id: j for j in jobs}
        upstream = {j.id: {d for d in j.deps if d in by_id} for j in jobs}
        waiting = {k: v for k, v in upstream.items() if v}  # jobs not yet submitted → deps still running
        dependents: dict[str, list[str]] = {}
        for job_id, deps in waiting.items():
            for d in deps:
                dependents.setdefault(d, []).append(job_id)
        self._start()
        try:
            ready = [j for j in jobs if not upstream[j.id]]
            while ready or self._busy():
                for job in ready:
                    self._submit(job)
                ready = []
                for outcome in self._finished():
                    yield outcome
                    todo = list(dependents.get(outcome.job.id, ()))
                    while todo:
                        child = todo.pop()
                        if child not in waiting:
                            continue
                        if outcome.error is None:
                            waiting[child].discard(outcome.job.id)
                            if not waiting[child]:
                                del waiting[child]
                                ready.append(by_id[child])
                        else:  # a failed upstream job fails the whole subtree below it
                            del waiting[child]
                            yield Outcome(by_id[child], error=f"upstream {outcome.job.kind} failed: {outcome.error}")
                            todo.extend(dependents.get(child, ()))
        finally:
            self._stop()

    def _start(self) -> None: ...
    def _stop(self) -> None: ...


@EXECUTORS.register("serial")
class SerialExecutor(_DagExecutor):
    """Every job in this process, in dependency order."""

    def __init__(self, processes: int | None = None, threads: int | None = None, address: str | None = None) -> None:
        self.threads = threads
        self._queue: list[Job] = []

    def _submit(self, job: Job) -> None:
        self._queue.append(job)

    def _busy(self) -> bool:
        return bool(self._queue)

    def _finished(self) -> Iterator[Outcome]:
        job = self._queue.pop(0)
        yield _run_here(job, self.threads)


@EXECUTORS.register("local")
class LocalExecutor(_DagExecutor):
    """A process pool (spawned workers, ``processes`` × ``threads`` ≤ cores by default)."""

    def __init__(self, processes: int | None = None, threads: int | None = None, address: str | None = None) -> None:
        cores = machine_cores()
        self.processes = processes or cores
        self.threads = threads or max(1, cores // self.processes)
        self._pool, self._futures, self._inline = None, {}, []

    def _start(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        # Workers read these when they import numpy / scikit-learn: without them every worker's BLAS would
        # start one thread per core and the processes would fight over the cores.
        self._saved_env = {k: os.environ.get(k) for k in THREAD_ENV}
        os.environ.update({k: str(self.threads) for k in THREAD_ENV})
        # spawn, not fork: a forked child would inherit torch's thread pools and locks mid-use
        self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        for _ in range(self.processes):  # workers start importing torch now, while features run in the driver
            self._pool.submit(warm_up)

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for key, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _submit(self, job: Job) -> None:
        if job.kind == "features":
            self._inline.append(job)
        else:
            self._futures[self._pool.submit(execute, job, self.threads)] = job

    def _busy(self) -> bool:
        return bool(self._futures or self._inline)

    def _finished(self) -> Iterator[Outcome]:
        from concurrent.futures import FIRST_COMPLETED, wait

        if self._inline:
            yield _run_here(self._inline.pop(0), machine_cores())
            return
        done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
        for future in done:
            job = self._futures.pop(future)
            try:
                value, seconds = future.result()
                yield Outcome(job, value, seconds)
            except Exception as err:  # noqa: BLE001 - a failed run is recorded and the sweep continues
                yield Outcome(job, error=_describe(err))


@EXECUTORS.register("ray")
class RayExecutor(_DagExecutor):
    """Jobs as Ray tasks (1 CPU each) chained by ObjectRefs; ``address`` joins a running cluster, otherwise a
    local Ray with ``processes`` CPUs is started and stopped here."""

    def __init__(self, processes: int | None = None, threads: int | None = None, address: str | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("executor 'ray' needs Ray: pip install 'w2slab[ray]'") from None
        if address:
            check_ray_address(address)
        self.address = address
        self.processes = processes or machine_cores()
        self.threads = threads or 1
        self._refs: dict = {}
        self._jobs: dict = {}
        self._started_here = False

    def _start(self) -> None:
        import ray

        if not ray.is_initialized():
            options = {"address": self.address} if self.address else {
                "num_cpus": self.processes, "include_dashboard": False}
            ray.init(log_to_driver=False, configure_logging=False, **options)
            self._started_here = True

    def _stop(self) -> None:
        import ray

        if self._started_here:
            ray.shutdown()

    def _submit(self, job: Job) -> None:
        # upstream refs as extra arguments make Ray wait for them; ``execute`` reads their outputs from the cache
        ref = _ray_task().options(num_cpus=1, max_retries=0).remote(job, self.threads,
                                                                    *[self._refs[d] for d in job.deps if d in self._refs])
        self._refs[job.id], self._jobs[ref] = ref, job

    def _busy(self) -> bool:
        return bool(self._jobs)

    def _finished(self) -> Iterator[Outcome]:
        import ray

        done, _ = ray.wait(list(self._jobs), num_returns=1)
        for ref in done:
            job = self._jobs.pop(ref)
            try:
                value, seconds = ray.get(ref)
                yield Outcome(job, value, seconds)
            except Exception as err:  # noqa: BLE001
                yield Outcome(job, error=_describe(getattr(err, "cause", None) or err))


_RAY_TASK = None


def _ray_task():
    global _RAY_TASK
    if _RAY_TASK is None:
        import ray

        @ray.remote
        def run_job(job, threads, *upstream):
            return execute(job, threads)

        _RAY_TASK = run_job
    return _RAY_TASK


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """ConfigError unless something answers at ``host:port`` (``ray.init`` would otherwise wait for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto":
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError):
        raise ConfigError(f"Ray address {address!r} does not answer (expected host:port of a running Ray head)") from None


def _run_here(job: Job, threads: int | None) -> Outcome:
    try:
        value, seconds = execute(job, threads)
        return Outcome(job, value, seconds)
    except Exception as err:  # noqa: BLE001
        return Outcome(job, error=_describe(err))


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]
