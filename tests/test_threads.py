"""CPU threads from ``params.compute`` (hcc_utils.threads): this process, the kernels' environment, workers."""

import json
import os

import nbformat
import pandas as pd
import pytest
import torch
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from threadpoolctl import threadpool_info, threadpool_limits

from hcc_utils import notebook, threads
from hcc_utils.cnn_train import torch_settings
from hcc_utils.config import CNNConfig, ComputeConfig
from hcc_utils.runner import run_book

VARIABLES = (*threads.WAIT_POLICY_VARIABLES, *threads.THREAD_COUNT_VARIABLES)


@pytest.fixture
def restored(monkeypatch):
    """Whatever a test sets (torch's and every pool's threads, the variables, the configured count) is undone."""
    for key in VARIABLES:
        monkeypatch.setenv(key, "sentinel")
        monkeypatch.delenv(key)
    monkeypatch.setattr(threads, "_configured", None)
    torch_before = torch.get_num_threads()
    with threadpool_limits(limits=None):
        yield
    torch.set_num_threads(torch_before)


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def params_file(tmp_path, compute: dict) -> str:
    pd.DataFrame({"patient_id": ["P1"], "image": ["i.nii.gz"], "mask": ["m.nii.gz"], "er": [1]}).to_csv(
        tmp_path / "cohort.csv", index=False)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "cohort": {"manifest": "cohort.csv"}, "compute": compute}))
    return str(path)


def test_kernel_environment_is_passive_with_the_available_cores_by_default():
    env = threads.kernel_environment(ComputeConfig())
    cores = str(len(os.sched_getaffinity(0)))
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0",
                   "OMP_NUM_THREADS": cores, "MKL_NUM_THREADS": cores, "OPENBLAS_NUM_THREADS": cores}
    active = threads.kernel_environment(ComputeConfig(threads=3, omp_wait_policy="active"))
    assert active["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in active
    assert active["OMP_NUM_THREADS"] == active["OPENBLAS_NUM_THREADS"] == "3"
    assert threads.kernel_environment(ComputeConfig(threads=3), threads=1)["MKL_NUM_THREADS"] == "1"


def test_configure_sets_torch_and_blas_here_and_worker_counts_for_children(restored):
    assert threads.configure(ComputeConfig(threads=1, worker_threads=2)) == 1
    assert torch.get_num_threads() == 1 and blas_threads() == {1}
    assert threads.configured_threads() == 1
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["OMP_NUM_THREADS"] == "2"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"
    threads.configure(ComputeConfig())
    assert torch.get_num_threads() == threads.available_cores()


def test_notebook_setup_configures_the_threads(restored, tmp_path):
    params, _ = notebook.setup(params_file(tmp_path, {"threads": 1}), tmp_path / "run")
    assert params.compute.threads == 1 and torch.get_num_threads() == 1 and blas_threads() == {1}


def test_training_uses_the_configured_count_unless_cnn_num_threads(restored, monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "_configured", 1)
    with torch_settings(CNNConfig(), torch.device("cpu")):
        assert torch.get_num_threads() == 1
    with torch_settings(CNNConfig(num_threads=3), torch.device("cpu")):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == 2


def test_worker_threads_limits_then_restores(restored):
    torch.set_num_threads(2)
    with threadpool_limits(limits=2):
        with threads.worker_threads(1):
            assert torch.get_num_threads() == 1 and blas_threads() == {1}
        assert torch.get_num_threads() == 2 and blas_threads() == {2}


def test_one_thread_count_is_bit_reproducible_and_counts_differ_only_in_rounding():
    """What the module docstring says of the CNNs, on ResNet's first convolution (whose weight gradient differs
    between 1 and 2 threads in torch 2.14): the same count gives the same gradient; another count, at most a
    rounding difference (which training then amplifies)."""
    def gradient(n: int) -> torch.Tensor:
        torch.set_num_threads(n)
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        conv(torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(1))).square().sum().backward()
        return conv.weight.grad

    before = torch.get_num_threads()
    try:
        one, two, one_again = gradient(1), gradient(2), gradient(1)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, one_again)
    assert float((one - two).abs().max()) <= 1e-5 * float(one.abs().max())


def test_the_runner_gives_every_kernel_the_variables(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    body = (f"import json, os\nfrom pathlib import Path\n"
            f"json.dump({{k: os.environ.get(k) for k in {VARIABLES!r}}}, open(Path(run_dir) / 'env.json', 'w'))")
    cells = [new_code_cell('params_file = "x"\nrun_dir = "y"', metadata={"tags": ["parameters"]}),
             new_code_cell(body)]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                       "display_name": "Python 3"}}),
                   nbs / "env.ipynb")
    before = {k: os.environ.get(k) for k in VARIABLES}
    result = run_book(params_file(tmp_path, {"threads": 3}), notebooks=[("env", "Env")], notebook_dir=nbs,
                      build=False, runs_root=tmp_path / "runs", echo=lambda *_: None)
    seen = json.loads((result.run_dir / "env.json").read_text())
    assert seen == threads.kernel_environment(ComputeConfig(threads=3))
    assert seen["OMP_WAIT_POLICY"] == "PASSIVE" and seen["OMP_NUM_THREADS"] == "3"
    assert {k: os.environ.get(k) for k in VARIABLES} == before
