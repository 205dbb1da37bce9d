"""The ``compute`` section of the parameters: where the per-patient work runs and how many threads it uses.

Nothing here changes a result: the same params give the same tables on the local processes and on a Dask cluster
(``hcc_utils.compute``), with any number of threads (``hcc_utils.threads``). Implements issue 18's scaling; the
method is docs/method.md's.

- ``scheduler: local`` (default): today's local processes (``radiomics.n_jobs``, ``apply.n_jobs``, ...).
- ``scheduler: dask``: stack building, radiomics extraction (both readers) and ``predict`` map over patients on a
  ``dask.distributed`` cluster, and the grid searches, repeats and permutations use joblib's Dask backend. Either
  ``address`` names a running scheduler (``tcp://host:8786``; the cohort's files must be visible to every worker
  under the same path) or ``local_cluster`` starts one on this machine.
- ``threads``: the intra-op threads of torch and the BLAS threads of this process (default: the cores this process
  may use, ``os.sched_getaffinity``); ``worker_threads``: the same inside each worker process (default 1, so N
  workers use N cores); ``omp_wait_policy: passive`` keeps OpenMP threads from spinning against other processes
  on a shared machine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hcc_utils.config_sections import _Section


class LocalClusterConfig(_Section):
    """A ``dask.distributed.LocalCluster`` on this machine (processes, not threads: PyRadiomics and SimpleITK
    hold the GIL for parts of their work)."""

    n_workers: int = Field(2, ge=1, le=256, description="worker processes")
    threads_per_worker: int = Field(1, ge=1, le=64, description="tasks each worker runs at once")


class ComputeConfig(_Section):
    """Where the per-patient work runs and with how many threads (module docstring)."""

    scheduler: Literal["local", "dask"] = Field("local", description="local processes, or a Dask cluster")
    address: str | None = Field(None, description="a running dask.distributed scheduler, e.g. tcp://host:8786 "
                                "(scheduler: dask)")
    local_cluster: LocalClusterConfig | None = Field(None, description="start a LocalCluster instead of "
                                                     "connecting to address (scheduler: dask)")
    threads: int | None = Field(None, ge=1, le=1024, description="torch intra-op and BLAS threads of this "
                                "process (None: the cores this process may use)")
    worker_threads: int = Field(1, ge=1, le=64, description="torch and BLAS threads in each worker process")
    omp_wait_policy: Literal["passive", "active"] = Field("passive", description="OpenMP threads sleep when "
                                                          "idle (passive) or spin (active)")

    @model_validator(mode="after")
    def _one_cluster(self) -> ComputeConfig:
        if self.scheduler == "dask" and (self.address is None) == (self.local_cluster is None):
            raise ValueError("scheduler: dask needs exactly one of address (a running scheduler, e.g. "
                             "tcp://host:8786) or local_cluster ({n_workers: 2, threads_per_worker: 1})")
        if self.scheduler == "local" and (self.address is not None or self.local_cluster is not None):
            raise ValueError("address and local_cluster are for scheduler: dask; remove them or set "
                             "scheduler: dask")
        return self
