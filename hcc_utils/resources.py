"""What a run costs and where it ran: the peak memory of the notebooks' processes, and the machine.

``PeakMemory`` wraps one notebook's execution in the runner: a daemon thread sums, every ``interval_s`` seconds,
the resident set size (RSS) of every process below this one (the papermill kernel and its workers: joblib's
processes, torch's data loaders) and keeps the largest sum. ``machine_info`` describes the hardware and software a
run used, for ``provenance.json`` and the Provenance chapter; it never records the host or user name.

Example::

    >>> with PeakMemory() as memory:
    ...     execute_notebook(...)
    >>> memory.peak_mb
    1843.2
"""

from __future__ import annotations

import functools
import os
import platform
import threading
from pathlib import Path

import psutil

MB = 2**20
"""Bytes per MB as this module counts them (a mebibyte)."""
CPUINFO = Path("/proc/cpuinfo")
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


class PeakMemory:
    """The peak summed RSS, in MB (``MB`` bytes), of this process's child process tree while the block runs.

    Processes that live shorter than one sampling interval may be missed, and pages shared between processes
    (forked workers, shared libraries) are counted once per process, so the sum is an upper bound of the memory
    the tree needed at its peak. ``include_self`` adds this process itself.

    Attributes:
        peak_mb: the largest sum seen, in MB; ``None`` until the block has exited.
        samples: how many times the tree was measured.
    """

    def __init__(self, interval_s: float = 0.5, include_self: bool = False) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.include_self = include_self
        self.peak_mb: float | None = None
        self.samples = 0
        self._peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tree_rss(self) -> int:
        """The summed RSS in bytes of the child processes (recursively) now alive."""
        me = psutil.Process()
        try:
            processes = me.children(recursive=True)
        except psutil.Error:
            processes = []
        if self.include_self:
            processes.append(me)
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # it ended, or became a zombie, between the listing and the reading
                continue
        return total

    def _sample(self) -> None:
        self._peak_bytes = max(self._peak_bytes, self.tree_rss())
        self.samples += 1

    def _watch(self) -> None:
        self._sample()
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._peak_bytes, self.samples, self.peak_mb = 0, 0, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="PeakMemory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.peak_mb = self._peak_bytes / MB


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows, else ``"unknown"``."""
    try:
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int | None:
    """The logical cores this process may run on (its CPU affinity; a container or ``taskset`` can narrow it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def memory_limit_gb() -> float | None:
    """The cgroup (v2) memory limit in GB when one is set below the machine's memory, else ``None``."""
    try:
        text = CGROUP_MEMORY_MAX.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= psutil.virtual_memory().total:
        return None
    return round(int(text) / 1e9, 1)


def gpu_names() -> list[str]:
    """The CUDA devices torch sees, by name; empty without torch or without a usable GPU."""
    try:
        import torch
    except ImportError:
        return []
    try:
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    except (RuntimeError, AssertionError):  # a driver that torch cannot use
        return []


def machine_info() -> dict:
    """The machine a run used: CPU model, logical cores, cores this process may use, memory in GB (10^9 bytes)
    and any cgroup limit on it, GPU names, OS and Python. Measured once per process (the GPU query imports
    torch); each call returns a fresh copy."""
    return {**_machine_info(), "gpus": list(_machine_info()["gpus"])}


@functools.lru_cache(maxsize=1)
def _machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "memory_limit_gb": memory_limit_gb(),
        "gpus": gpu_names(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
