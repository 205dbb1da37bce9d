"""The per-patient work on a Dask cluster gives the local path's tables (issue 18; ``hcc_utils.compute``).

A ``LocalCluster`` of 2 worker processes (1 thread each) against the local path on the smoke cohort
(``params/smoke.yaml``'s patients, one of them given a broken mask): chapters 01-02 byte for byte (every table, the
exclusions, the input checks, the stacks and the slice dataset), and the light radiomics features of
``params/radiomics_smoke.yaml`` (both readers, one patient's reader-1 mask broken). Then ``map_patients``'
bounded window and order, and the errors.
"""

from __future__ import annotations

import json
import operator
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hcc_utils import compute
from hcc_utils.config import ComputeConfig, load_params
from hcc_utils.run_folder import RunFolder
from hcc_utils.threads import worker_threads

PROJECT = Path(__file__).resolve().parents[1]
CLUSTER = {"scheduler": "dask", "local_cluster": {"n_workers": 2, "threads_per_worker": 1}}
BROKEN = "HCC0005"  # intake excludes it (unreadable mask) on both paths


def _params_file(folder: Path, manifest: Path, dask: bool) -> Path:
    """``params/smoke.yaml`` on ``manifest``, its radiomics settings by absolute path; on the cluster or not."""
    params = yaml.safe_load((PROJECT / "params" / "smoke.yaml").read_text())
    params["cohort"] = {k: v for k, v in params["cohort"].items() if k != "synthetic"} | {"manifest": str(manifest)}
    params["radiomics"]["settings"] = str(PROJECT / "params" / "radiomics_smoke.yaml")
    if dask:
        params["compute"] = CLUSTER
    path = folder / ("dask.yaml" if dask else "local.yaml")
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def cohort_manifest(tmp_path_factory) -> Path:
    """The smoke cohort's manifest (absolute paths), ``BROKEN``'s mask replaced by a file that is not an image."""
    from hcc_utils.cohort import manifest_path

    source = manifest_path(load_params(PROJECT / "params" / "smoke.yaml"))  # generated once, then cached
    folder = tmp_path_factory.mktemp("cohort")
    table = pd.read_csv(source, dtype=str)
    for column in ("image", "mask", "mask_reader2"):
        table[column] = [str((source.parent / p).resolve()) for p in table[column]]
    broken = folder / f"{BROKEN}_mask.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    table.loc[table["patient_id"] == BROKEN, "mask"] = str(broken)
    table.to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


@pytest.fixture(scope="module")
def runs(cohort_manifest, tmp_path_factory) -> dict[str, RunFolder]:
    """Chapters 01-02 run once locally and once on a 2-process LocalCluster."""
    from hcc_utils.runner import NOTEBOOKS, run_book

    folder = tmp_path_factory.mktemp("runs")
    out = {}
    for name, dask in (("local", False), ("dask", True)):
        result = run_book(_params_file(folder, cohort_manifest, dask), out=folder / name, build=False,
                          notebooks=NOTEBOOKS[:2], echo=lambda *_: None, cell_timeout=600)
        out[name] = RunFolder(result.run_dir)
    return out


def _files(root: Path, pattern: str) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.glob(pattern)) if p.is_file()}


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def test_chapters_01_02_identical_on_a_local_cluster(runs):
    local, dask = runs["local"].root, runs["dask"].root
    params = load_params(dask / "params.yaml")
    assert params.compute.scheduler == "dask" and params.compute.local_cluster.n_workers == 2
    for pattern in ("tables/*", "exclusions.csv", "cache/checks/*", "cache/stacks/*.json", "cache/slices/*.csv",
                    "cache/slices/*.json"):
        mine, theirs = _files(local, pattern), _files(dask, pattern)
        assert mine and mine.keys() == theirs.keys(), pattern
        for name, path in mine.items():
            assert path.read_bytes() == theirs[name].read_bytes(), name
    stacks = _files(local, "cache/stacks/*.npz") | _files(local, "cache/slices/*.npz")
    assert len(stacks) > 40
    for name, path in stacks.items():
        mine, theirs = _arrays(path), _arrays(dask / name)
        assert mine.keys() == theirs.keys()
        for key, values in mine.items():
            assert values.dtype == theirs[key].dtype and np.array_equal(values, theirs[key]), (name, key)
    exclusions = pd.read_csv(dask / "exclusions.csv")
    assert set(exclusions.loc[exclusions["severity"] == "excluded", "patient_id"]) == {BROKEN}
    assert BROKEN not in set(pd.read_csv(dask / "tables" / "cohort_split.csv")["patient_id"])


def test_radiomics_features_identical_on_a_local_cluster(runs, tmp_path, monkeypatch):
    """Both readers' light-bank features (radiomics_smoke.yaml); a broken reader-1 mask excludes its patient
    the same way. The ICC patients and every sixth other patient keep the test short."""
    from hcc_utils import cohort, radiomics

    used = []

    def spy(fn, items, cfg, *args, **kwargs):
        used.append(compute.is_dask(cfg))
        return map_patients(fn, items, cfg, *args, **kwargs)

    map_patients = compute.map_patients
    monkeypatch.setattr(compute, "map_patients", spy)
    tables = {}
    for name in ("local", "dask"):
        run = RunFolder(shutil.copytree(runs[name].root, tmp_path / name, ignore=shutil.ignore_patterns("cache")))
        params = load_params(run.params_file)
        patients = cohort.load_cohort(params, run)
        second = set(radiomics.icc_patient_ids(patients, params))
        keep = patients["patient_id"].isin(second) | patients.index.isin(range(0, len(patients), 6))
        patients = patients[keep].reset_index(drop=True)
        bad = patients.loc[~patients["patient_id"].isin(second), "patient_id"].iloc[0]
        patients.loc[patients["patient_id"] == bad, "mask"] = str(tmp_path / "missing_mask.nii.gz")
        reader1, reader2 = radiomics.extract_cohort(patients, params, run, n_jobs=2)
        issues = run.exclusions("radiomics")
        tables[name] = (reader1, reader2, issues, bad, len(patients))
    (r1_local, r2_local, issues_local, bad, n), (r1_dask, r2_dask, issues_dask, _, _) = tables.values()
    assert n >= 15 and len(r1_local) == n - 1 and bad not in r1_local.index and len(r2_local) >= 8
    pd.testing.assert_frame_equal(r1_local, r1_dask, check_exact=True)
    pd.testing.assert_frame_equal(r2_local, r2_dask, check_exact=True)
    pd.testing.assert_frame_equal(issues_local, issues_dask)
    assert issues_dask["patient_id"].tolist() == [bad] and issues_dask["severity"].tolist() == ["excluded"]
    assert used == [False, True]


@pytest.mark.slow  # the session's smoke book (tests/conftest.py; HCC_SMOKE_RUN reuses a finished one)
def test_predict_gives_the_same_table_on_a_local_cluster(smoke_run, tmp_path):
    from _bundle_run import new_manifest

    from hcc_utils.bundle import load_bundle
    from hcc_utils.predict import predict_patients, read_new_manifest

    model = load_bundle(smoke_run.run_dir)
    path = new_manifest(smoke_run.run_dir, tmp_path / "in", limit=4)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows.at[1, "mask"] = str(tmp_path / "in" / "gone_mask.nii.gz")
    rows.to_csv(path, index=False)
    manifest = read_new_manifest(path, model)
    tables = [predict_patients(model, manifest.table, tmp_path / name, manifest.problems, progress=False,
                               reports=False, compute=cfg)
              for name, cfg in (("local", None), ("dask", ComputeConfig(**CLUSTER)))]
    pd.testing.assert_frame_equal(*tables, check_exact=True)
    assert tables[1]["status"].tolist() == ["scored", "excluded", "scored", "scored"]


# ------------------------------------------------------------------------------------------- map_patients


@pytest.fixture(scope="module")
def threads_cluster():
    """An in-process cluster (2 workers x 1 thread), reached by its address like a user's ``dask scheduler``."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield ComputeConfig(scheduler="dask", address=cluster.scheduler_address)


def _slow_square(i: int, seconds: float) -> dict:
    time.sleep(seconds)
    return {"i": i, "square": i * i}


def _fails(i: int) -> int:
    if i == 3:
        raise ValueError(f"patient {i}: unforeseen")
    return i


def test_map_patients_keeps_order_and_at_most_k_tasks(threads_cluster):
    pulled = []

    def items():
        for i in range(12):
            pulled.append(i)
            yield (i, 0.05 if i % 3 else 0.2)  # uneven durations: results finish out of order

    out = []
    for result in compute.map_patients(_slow_square, items(), threads_cluster, max_in_flight=3):
        assert len(pulled) - len(out) <= 3  # submitted and not yet handed back
        out.append(result)
    assert [r["i"] for r in out] == list(range(12)) and out[5]["square"] == 25
    local = list(compute.map_patients(_slow_square, [(i, 0.0) for i in range(12)], None, n_jobs=2))
    assert [r["square"] for r in local] == [r["square"] for r in out]


def test_map_patients_default_window_and_errors(threads_cluster):
    pulled = []

    def items():
        for i in range(20):
            pulled.append(i)
            yield (i, 0.01)

    stream = compute.map_patients(_slow_square, items(), threads_cluster)
    first = next(stream)
    assert first["i"] == 0 and len(pulled) <= 4  # twice the cluster's 2 worker threads
    stream.close()
    with pytest.raises(ValueError, match="patient 3: unforeseen"):
        list(compute.map_patients(_fails, [(i,) for i in range(6)], threads_cluster))
    assert list(compute.map_patients(operator.add, [(1, 2), (3, 4)], ComputeConfig())) == [3, 7]


def test_tasks_on_a_worker_run_locally_with_worker_threads(threads_cluster):
    """Inside a task ``is_dask`` is False (a task's own fits stay in it) and the thread limits hold, restored
    after."""
    from threadpoolctl import threadpool_info

    with compute.client(threads_cluster) as client:
        assert client.submit(compute.is_dask, threads_cluster).result() is False
    assert compute.is_dask(threads_cluster)
    before = [p["num_threads"] for p in threadpool_info()]
    with worker_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert [p["num_threads"] for p in threadpool_info()] == before


def test_joblib_backend_runs_a_grid_search_on_the_cluster(threads_cluster):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + rng.normal(0, 0.5, 60) > 0).astype(int)
    grid = {"C": [0.01, 0.1, 1.0]}
    local = GridSearchCV(LogisticRegression(), grid, cv=3, n_jobs=1).fit(x, y)
    with compute.joblib_backend(threads_cluster):
        import joblib

        assert type(joblib.parallel.get_active_backend()[0]).__name__ == "DaskDistributedBackend"
        on_cluster = GridSearchCV(LogisticRegression(), grid, cv=3, n_jobs=1).fit(x, y)
    assert on_cluster.best_params_ == local.best_params_
    np.testing.assert_array_equal(on_cluster.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])


def test_permutations_and_grid_search_identical_on_the_cluster(threads_cluster, tmp_path):
    """The robustness fits and a grid search through joblib's Dask backend: the same null AUCs and tables, the
    same probabilities."""
    from _cnn_data import make_params

    from hcc_utils import artifacts, robustness
    from hcc_utils.modeling import fit_recipe
    from hcc_utils.robustness_chain import ChainInputs

    rng = np.random.default_rng(0)
    ids = [f"T{i:03d}" for i in range(60)]
    er = rng.permutation(np.arange(60) % 2)
    cohort = pd.DataFrame({"patient_id": ids, "er": er, "split": np.where(rng.permutation(60) < 18, "validation",
                                                                          "train")})
    features = pd.DataFrame(rng.uniform(0, 1, (60, len(artifacts.MIL_FEATURE_COLUMNS))), index=ids,
                            columns=list(artifacts.MIL_FEATURE_COLUMNS))
    features["PLH_10"] = er + rng.normal(0, 0.3, 60)
    tables = []
    for name, cfg in (("local", ComputeConfig()), ("dask", threads_cluster)):
        params = make_params()
        params.robustness.permutations = 9
        params.compute = cfg
        params.model.n_estimators, params.model.max_depth, params.model.min_samples_split = [10, 30], [2, None], [2]
        result = robustness.permutation_test(ChainInputs(cohort=cohort, mil_table=features), params,
                                              RunFolder(tmp_path / name))
        tables.append((result.table, result.null))
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0], check_exact=True)
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1], check_exact=True)
    fits = []
    for cfg in (ComputeConfig(), threads_cluster):  # notebook 05's grid search and out-of-fold refits
        params = make_params()
        params.compute = cfg
        params.model.n_estimators, params.model.max_depth, params.model.min_samples_split = [10, 30], [2, None], [2]
        table = cohort.set_index("patient_id")
        fits.append(fit_recipe(features, table["er"], table["split"], params, "DL-MIL"))
    pd.testing.assert_frame_equal(fits[0].predictions, fits[1].predictions, check_exact=True)
    pd.testing.assert_frame_equal(fits[0].grid, fits[1].grid, check_exact=True)


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(compute, "CONNECT_TIMEOUT_S", 1)
    cfg = ComputeConfig(scheduler="dask", address="tcp://127.0.0.1:9")
    with pytest.raises(compute.ComputeError, match=r"tcp://127\.0\.0\.1:9.*dask scheduler"):
        list(compute.map_patients(operator.add, [(1, 2)], cfg))


def test_params_file_error_names_what_to_set():
    with pytest.raises(ValueError, match="exactly one of address"):
        ComputeConfig(scheduler="dask")
    assert json.loads(ComputeConfig().model_dump_json())["scheduler"] == "local"
    assert not compute.is_dask(None) and not compute.is_dask(ComputeConfig())
