"""Where the per-patient work and the independent fits run: this machine's processes or a Dask cluster.

The params' ``compute`` section (``hcc_utils.config_compute``) chooses; nothing here changes a result (issue 18):

- :func:`map_patients` is the one way a stage maps a function over its patients (the input checks of chapter 01,
  the 2.5D stacks, the radiomics extraction, ``predict``). ``scheduler: local`` is the stage's own joblib path
  (processes when ``n_jobs > 1``, else this process). ``scheduler: dask`` submits the patients to the cluster
  with at most ``max_in_flight`` tasks held at a time (default twice the cluster's worker threads) and yields the
  results **in the order of the patients**, as the local path does, so the stages write the same tables, the
  same ``exclusions.csv`` rows in the same order, and the driver holds at most ``max_in_flight`` results
  whatever the cohort's size. A patient's problem travels back as a value (the stage's verdict dict), exactly as
  from a local process; an unforeseen exception is raised in the driver as locally.
- :func:`joblib_backend` runs joblib's ``Parallel`` (scikit-learn's grid searches, the robustness repeats,
  permutations and held-out sites) on the cluster through joblib's ``"dask"`` backend.
- :func:`client` gives the ``distributed.Client``: connected to ``compute.address`` (a running ``dask
  scheduler``) or to a ``LocalCluster`` of ``compute.local_cluster`` worker *processes* started here and closed
  after. Nested uses share the one client.

Each task on a worker runs with ``compute.worker_threads`` BLAS threads (threadpoolctl), SimpleITK threads and,
when the worker has imported torch, torch intra-op threads; the previous values are restored after the task.
Workers read the cohort's files themselves: every worker must see them (and this package) under the same paths
as the driver. Example::

    >>> for result in map_patients(check_patient, [(pid, image, mask, pre, cfg) for ...], params.compute, 2):
    ...     record(result)
"""

from __future__ import annotations

import contextlib
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from hcc_utils.config_compute import ComputeConfig
from hcc_utils.threads import worker_threads

if TYPE_CHECKING:
    from distributed import Client

CONNECT_TIMEOUT_S = 20
"""Seconds to wait for ``compute.address``'s scheduler before giving up with an error."""
_OPEN: dict[tuple, list] = {}  # the client of each cluster spec in use here, and how many users hold it


class ComputeError(RuntimeError):
    """The Dask cluster of ``compute`` cannot be used; the message says what to start or change."""


def is_dask(compute: ComputeConfig | None) -> bool:
    """Whether ``compute`` sends the work to a Dask cluster: ``scheduler: dask``, and this process is not itself
    one of its workers (a task's own fits run in the task)."""
    return compute is not None and compute.scheduler == "dask" and not _in_worker()


def _in_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ComputeError(f"compute.scheduler: dask needs the packages dask and distributed ({exc}); install "
                           "them with pip install -r requirements.txt, or set compute.scheduler: local") from None
    return distributed


def _spec(compute: ComputeConfig) -> tuple:
    cluster = compute.local_cluster
    return (compute.address, cluster.n_workers if cluster else None, cluster.threads_per_worker if cluster else None)


def _connect(compute: ComputeConfig):
    """A new client (and the LocalCluster it owns, or None)."""
    distributed = _distributed()
    if compute.address is not None:
        try:
            return distributed.Client(compute.address, timeout=CONNECT_TIMEOUT_S), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ComputeError(
                f"compute.address: cannot connect to the Dask scheduler at {compute.address} within "
                f"{CONNECT_TIMEOUT_S} s ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"start one with `dask scheduler` on that machine and workers with `dask worker "
                f"{compute.address} --nworkers 2 --nthreads 1`, check the host and port, or set "
                "compute.scheduler: local") from None
    cfg = compute.local_cluster
    cluster = distributed.LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker,
                                       processes=True, dashboard_address=None)
    return distributed.Client(cluster), cluster


@contextlib.contextmanager
def client(compute: ComputeConfig) -> Iterator[Client | None]:
    """The ``distributed.Client`` of ``compute`` (None for ``scheduler: local``), closed on leaving the outermost
    use (with the ``LocalCluster`` it started). Raises :class:`ComputeError` when the scheduler cannot be
    reached or dask is not installed."""
    if not is_dask(compute):
        yield None
        return
    key = _spec(compute)
    if key in _OPEN:
        _OPEN[key][2] += 1
    else:
        _OPEN[key] = [*_connect(compute), 1]
    entry = _OPEN[key]
    try:
        yield entry[0]
    finally:
        entry[2] -= 1
        if entry[2] == 0:
            del _OPEN[key]
            entry[0].close()
            if entry[1] is not None:
                entry[1].close()


@contextlib.contextmanager
def joblib_backend(compute: ComputeConfig | None) -> Iterator[None]:
    """joblib's ``"dask"`` backend on ``compute``'s cluster for the ``Parallel`` calls inside (scikit-learn's
    ``n_jobs``, ``joblib.Parallel``); nothing for ``scheduler: local``. On the cluster every worker thread is
    used, whatever ``n_jobs`` says."""
    if not is_dask(compute):
        yield
        return
    import joblib

    with client(compute), joblib.parallel_config(backend="dask"):
        yield


def _task(fn: Callable, args: tuple, threads: int) -> Any:
    """One patient on a worker, with the worker's thread settings."""
    with worker_threads(threads):
        return fn(*args)


def map_patients(fn: Callable, items: Iterable[tuple], compute: ComputeConfig | None, n_jobs: int = 1,
                 max_in_flight: int | None = None) -> Iterator[Any]:
    """``fn(*args)`` for each ``args`` of ``items``, yielded in the order of ``items`` (module docstring).

    Args:
        fn: a module-level function (it is pickled to the workers) that reports a patient's problem in its
            result rather than raising.
        items: one argument tuple per patient (paths and settings, not images).
        compute: the run's ``params.compute``; None or ``scheduler: local``: ``n_jobs`` local processes
            (joblib; this process when ``n_jobs`` is 1).
        max_in_flight: at most this many tasks submitted and not yet yielded (``scheduler: dask``; default twice
            the cluster's worker threads): the driver's memory does not grow with the cohort.
    """
    if not is_dask(compute):
        if n_jobs > 1:
            from joblib import Parallel, delayed

            yield from Parallel(n_jobs=n_jobs, return_as="generator")(delayed(fn)(*args) for args in items)
        else:
            yield from (fn(*args) for args in items)
        return
    with client(compute) as dask_client:
        limit = max_in_flight or 2 * max(1, sum(dask_client.nthreads().values()))
        pending: deque = deque()
        todo = iter(items)
        try:
            while True:
                for args in todo:
                    pending.append(dask_client.submit(_task, fn, tuple(args), compute.worker_threads, pure=False))
                    if len(pending) >= limit:
                        break
                if not pending:
                    return
                future = pending.popleft()
                result = future.result()
                future.release()
                yield result
        finally:
            for future in pending:
                future.cancel()
