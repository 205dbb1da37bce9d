"""CPU threads of torch, the BLAS libraries and OpenMP, set from ``params.compute`` (issue 18, item 3).

On a machine shared with another CPU-bound process, OpenMP threads that spin while they wait for work take the
cores the other process needs, and torch's parallel regions then wait for threads that were descheduled: the
default book's CNN stage ran 4-12x slower with one competing process on 2 cores. Two remedies, both here:

- an OpenMP wait policy that sleeps instead of spinning (``compute.omp_wait_policy: passive``). Torch's pip wheels
  bundle GNU OpenMP (``torch/lib/libgomp.so.1``, which MKL's GNU threading layer uses too), and it reads
  ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when it is loaded: the policy reaches a process only through
  its environment at start, or before torch is imported. ``KMP_BLOCKTIME`` is the same knob for Intel OpenMP
  (conda builds of torch); GNU OpenMP ignores it.
- the thread counts: ``compute.threads`` (default: the cores this process may use, ``os.sched_getaffinity``) for
  torch's intra-op threads and every BLAS and OpenMP pool of a notebook's process, ``compute.worker_threads`` in
  the processes it starts (joblib's workers take ``OMP_NUM_THREADS`` and the like from their parent's environment
  when it has them, and otherwise cores // n_jobs).

Thread counts change no table except the CNNs'. Torch's CPU kernels round differently with 1 and 2 threads
(measured, torch 2.14: the weight gradients of ResNet's first convolutions, DenseNet121's forward pass and nearly
all its gradients, in the last bits), and training amplifies that into different weights and AUCs (2 epochs on a
tiny set: selection AUC 0.52 vs 0.45). On one thread count a CNN run is bit-reproducible, as before: torch's
default was the same count. To reproduce another machine's CNN numbers, set ``compute.threads`` (or
``cnn.num_threads``, which overrides it for training) to the count its run used.

- ``kernel_environment(compute)``: the variables a new process needs before it starts (the runner gives them to
  every notebook kernel).
- ``configure(compute)``: this process (``notebook.setup`` calls it).
- ``worker_threads(n)``: a context manager for the work inside a worker process; restores the limits after.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

from hcc_utils.config_compute import ComputeConfig

THREAD_COUNT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""The thread counts OpenMP (torch, scikit-learn), MKL (torch's) and OpenBLAS (numpy, scipy) read when loaded."""
WAIT_POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
"""How OpenMP threads wait for work: the standard variable, GNU OpenMP's spin count, Intel OpenMP's block time."""

_configured: int | None = None


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: a SLURM job's or a container's share), or
    ``os.cpu_count()`` where the platform has no affinity (macOS, Windows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def process_threads(compute: ComputeConfig) -> int:
    """Threads for torch and BLAS in a notebook's process: ``compute.threads``, default the available cores."""
    return compute.threads or available_cores()


def configured_threads() -> int | None:
    """The count the last ``configure`` in this process set, or None (``cnn_train.torch_settings`` uses it, so a
    network trains on it even when torch was imported after ``configure``)."""
    return _configured


def wait_environment(policy: str) -> dict[str, str]:
    """The OpenMP wait variables for ``passive`` (sleep as soon as idle: GNU spin count 0, Intel block time 0) or
    ``active`` (spin until there is work)."""
    if policy == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}
    return {"OMP_WAIT_POLICY": "ACTIVE"}


def kernel_environment(compute: ComputeConfig, threads: int | None = None) -> dict[str, str]:
    """The environment variables a new process needs before it starts: the wait policy and the thread counts.

    ``threads``: the count to give (default ``process_threads(compute)``; for a worker process,
    ``compute.worker_threads``).
    """
    count = str(threads or process_threads(compute))
    return {**wait_environment(compute.omp_wait_policy), **dict.fromkeys(THREAD_COUNT_VARIABLES, count)}


def _set_torch_threads(n: int) -> int | None:
    """Torch's intra-op threads, if torch is loaded (importing it here would cost every notebook a second of CPU
    and ~500 MB). Returns the count before, or None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def configure(compute: ComputeConfig) -> int:
    """Set this process's threads from ``compute``; returns the count (``process_threads``).

    Torch's intra-op threads (if loaded) and every BLAS and OpenMP pool already loaded get the count
    (threadpoolctl); ``os.environ`` gets the wait policy and ``compute.worker_threads`` as the thread counts, for
    the processes this one starts (joblib's workers, a ``LocalCluster``) and the libraries it loads later; torch,
    if imported later, gets the count when a network trains or predicts (``configured_threads``). The wait policy
    of a library already loaded cannot change: a notebook run by the runner has it from its kernel's
    environment; in JupyterLab it applies when ``setup`` runs before anything imports torch.
    """
    global _configured
    n = process_threads(compute)
    os.environ.update(kernel_environment(compute, compute.worker_threads))
    threadpool_limits(limits=n)
    _set_torch_threads(n)
    _configured = n
    return n


@contextmanager
def worker_threads(n: int | None) -> Iterator[None]:
    """Inside a worker process: ``n`` threads for torch and SimpleITK (if loaded) and every BLAS and OpenMP pool,
    restored after (a reused worker runs the next task with the limits it had); None changes nothing."""
    if not n:
        yield
        return
    sitk = sys.modules.get("SimpleITK")
    before_sitk = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() if sitk is not None else None
    with threadpool_limits(limits=n):
        before = _set_torch_threads(n)
        if sitk is not None:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
        try:
            yield
        finally:
            if before is not None:
                _set_torch_threads(before)
            if before_sitk is not None:
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before_sitk)
