"""hcc_utils.progress: bars where a person watches, one summary line per loop in a batch run (issue 17)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from _cnn_data import blob_slices, make_params
from tqdm import tqdm

from hcc_utils import cnn, cnn_train
from hcc_utils.progress import ENV, SUMMARY, plural, progress, progress_lines, summary_mode
from hcc_utils.run_folder import RunFolder


@pytest.fixture
def summary(monkeypatch):
    monkeypatch.setenv(ENV, SUMMARY)


@pytest.fixture
def interactive(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def test_summary_mode_yields_the_items_and_prints_one_line(summary, capsys):
    assert summary_mode()
    items = list(progress((i * i for i in range(7)), total=7, desc="squares", unit="patient"))
    out, err = capsys.readouterr()
    assert items == [i * i for i in range(7)] and err == ""
    assert re.fullmatch(r"squares: 7 patients in \d+\.\d s\n", out), out


def test_summary_mode_counts_in_words(summary, capsys):
    list(progress([1], desc="one", unit="patient"))
    list(progress(range(3), desc="batches", unit="batch"))
    list(progress(range(2), desc="default unit"))
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit(" in ", 1)[0] for line in lines] == ["one: 1 patient", "batches: 3 batches",
                                                             "default unit: 2 items"]
    assert plural(2, "epoch") == "epochs" and plural(0, "fit") == "fits"


def test_summary_mode_prints_nothing_for_a_loop_that_breaks(summary, capsys):
    bar = progress(range(10), desc="stopped")
    for i in bar:
        bar.set_postfix(i=i)  # tqdm's annotations are accepted and ignored
        if i == 3:
            break
    assert capsys.readouterr().out == ""


def test_interactive_mode_draws_a_tqdm_bar(interactive, capsys):
    bar = progress(range(5), total=5, desc="stacks", unit="patient", mininterval=0)
    assert isinstance(bar, tqdm)
    assert list(bar) == list(range(5))
    out, err = capsys.readouterr()
    assert out == "" and "stacks: 100%|" in err and progress_lines(err)


@pytest.mark.parametrize("mode", [SUMMARY, ""])
def test_a_disabled_bar_prints_nothing(mode, monkeypatch, capsys):
    monkeypatch.setenv(ENV, mode)
    assert list(progress(range(4), desc="quiet", unit="patient", disable=True)) == [0, 1, 2, 3]
    assert capsys.readouterr() == ("", "")


def _tqdm_text(**kwargs) -> str:
    stream = io.StringIO()
    for _ in tqdm(range(30), file=stream, mininterval=0, miniters=1, **kwargs):
        pass
    return stream.getvalue()


def test_progress_lines_finds_real_tqdm_output():
    texts = [_tqdm_text(desc="epoch 1/5", unit="batch", leave=False), _tqdm_text(desc="input checks",
                                                                                  unit="patient"),
             _tqdm_text(), _tqdm_text(unit="batch", unit_scale=True)]
    for text in texts:
        assert "\r" in text and progress_lines(text)
        # a notebook stream or a rendered page may keep each redraw on its own line
        redraws = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
        assert progress_lines("\n".join(redraws)) == redraws, text


def test_progress_lines_finds_nested_bars():
    stream = io.StringIO()
    for epoch in tqdm(range(2), desc="ResNet18", unit="epoch", file=stream, mininterval=0):
        for _ in tqdm(range(5), desc=f"epoch {epoch + 1}/2", unit="batch", leave=False, file=stream, mininterval=0):
            pass
    text = stream.getvalue()
    assert "\x1b[A" in text
    lines = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
    assert progress_lines("\n".join(lines)) == lines


@pytest.mark.parametrize("line", [
    "epoch 1/5:   3%|▎         | 2/66 [00:05<02:58,  2.97s/batch]",
    "radiomics (patients): 100%|##########| 12/12 [00:31<00:00,  2.6s/patient]",
    "headers: 0patient [00:00, ?patient/s]",
    "permutation test: 40%|████      | 4/10 [00:02<00:03, 1.85fit/s]",
    "100 it/s", "3.2 s/it",
])
def test_progress_lines_finds_bar_lines(line):
    assert progress_lines(f"before\n{line}\nafter") == [line]


@pytest.mark.parametrize("line", [
    "2.5D stacks: 48 patients in 3.4 s",
    "ResNet18: 6 epochs in 41 s (512 img/s), best epoch 4, selection AUC 0.812",
    "The validation AUC was 0.84 (95% CI 0.74-0.94); 12% of patients were excluded.",
    "Throughput: 2,101 slices at 512 img/s on one unit/s scale | table",
])
def test_progress_lines_leaves_summaries_and_prose_alone(line):
    assert progress_lines(line) == []


def test_cnn_training_in_summary_mode_prints_one_line_per_architecture(summary, tmp_path, capsys):
    data = blob_slices(n_patients=24, offsets=(0,), side=32, seed=2)
    params = make_params(architectures=["resnet18", "densenet121"], epochs={"resnet18": 2, "densenet121": 1},
                         progress=True)
    cnn.train_and_predict(data, params, RunFolder(tmp_path / "run"))
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith(("ResNet18", "DenseNet121"))]
    pattern = (r"{}: {} in \d+ s \(\d+ img/s\), "
               r"(best epoch \d, selection AUC \d\.\d{{3}}|epoch \d kept \(selection AUC undefined in every epoch\))")
    assert len(lines) == 2, out
    assert re.fullmatch(pattern.format("ResNet18", "2 epochs"), lines[0]), lines
    assert re.fullmatch(pattern.format("DenseNet121", "1 epoch"), lines[1]), lines
    assert not progress_lines(out + err) and "%|" not in out + err


def test_training_summary_says_what_was_kept():
    history = [{"seconds": 2.0, "images_per_s": 100.0}, {"seconds": 2.0, "images_per_s": 300.0}]
    line = cnn_train.training_summary("ResNet18", history, 2, 0.8125, 5.4)
    assert line == "ResNet18: 2 epochs in 5 s (200 img/s), best epoch 2, selection AUC 0.812"
    assert cnn_train.training_summary("ResNet18 fold 1", history[:1], 1, float("nan"), 2.0, selecting=False) == \
        "ResNet18 fold 1: 1 epoch in 2 s (100 img/s), epoch 1 kept (no selection)"
    assert cnn_train.training_summary("ResNet18", history, 2, float("nan"), 4.0).endswith(
        "epoch 2 kept (selection AUC undefined in every epoch)")


def test_cnn_training_in_interactive_mode_draws_its_bars(interactive, capsys):
    data = blob_slices(n_patients=8, offsets=(0,), side=32, seed=2)
    cfg = make_params(epochs={"resnet18": 1}, progress=True).cnn
    tensors = cnn_train.SliceTensors.from_stacks(data.images, data.patients["er"].to_numpy(), torch.device("cpu"))
    model = cnn.build_model("resnet18", None, cfg.zero_init_residual)
    with cnn_train.torch_settings(cfg, torch.device("cpu")):
        cnn_train.train_architecture(model, "resnet18", tensors, np.arange(6), np.arange(6, 8), cfg, seed=1,
                                     desc="ResNet18")
    out, err = capsys.readouterr()
    assert out == "" and "ResNet18: 100%|" in err
