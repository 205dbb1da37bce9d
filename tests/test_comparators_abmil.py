"""The ABMIL comparator (hcc_utils.comparators_abmil, plots.comparators): attention weights are distributions, the
attention finds a planted slice, validation rows influence nothing, runs repeat, the embeddings are the CNN head's
input. Tiny tensors on the CPU; the file runs in seconds."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from hcc_utils import cnn, cnn_train
from hcc_utils.comparators_abmil import GatedAttentionMIL, slice_embeddings, train_abmil
from hcc_utils.config_comparators import ABMILConfig
from hcc_utils.config_sections import CNNConfig
from hcc_utils.plots.comparators import attention_by_offset

matplotlib.use("Agg")

SIGNAL = 3  # the only instance that carries the label


def planted(n: int = 120, k: int = 11, d: int = 16, shift: float = 2.0, seed: int = 0):
    """Gaussian noise bags; instance SIGNAL is shifted by +shift (ER) or -shift (NER) on its first 4 dimensions.
    Roles: 50% fit, 20% select, 30% validation (neither), labels balanced."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    bags = rng.normal(0, 1, (n, k, d)).astype(np.float32)
    bags[:, SIGNAL, :4] += np.where(labels == 1, shift, -shift)[:, None]
    role = rng.permutation(np.repeat(["fit", "select", "validation"], [n // 2, n // 5, n - n // 2 - n // 5]))
    return bags, labels, role == "fit", role == "select"


CFG = ABMILConfig()  # the defaults: 200 epochs at most, early stop after 40 without a better selection AUC


@pytest.fixture(scope="module")
def toy():
    bags, labels, fit, select = planted()
    return bags, labels, fit, select, train_abmil(bags, labels, fit, select, CFG, seed=7)


def test_weights_are_distributions_and_shapes():
    torch.manual_seed(0)
    model = GatedAttentionMIL(16, hidden=8, attention=4, dropout=0.5)
    for mode in (model.train, model.eval):
        mode()
        logits, weights = model(torch.randn(5, 11, 16))
        assert logits.shape == (5,) and weights.shape == (5, 11)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(5))


def test_result_shapes_and_rows(toy):
    bags, labels, fit, select, result = toy
    assert result.prob.shape == (120,) and result.weights.shape == (120, 11)
    np.testing.assert_allclose(result.weights.sum(axis=1), 1.0, atol=1e-6)
    assert ((result.prob > 0) & (result.prob < 1)).all()
    np.testing.assert_array_equal(result.fit_rows, np.flatnonzero(fit))
    np.testing.assert_array_equal(result.select_rows, np.flatnonzero(select))
    assert list(result.history.columns) == ["epoch", "loss", "selection_auc"]
    assert 1 <= result.best_epoch <= len(result.history) <= CFG.epochs
    assert result.selection_auc == result.history["selection_auc"].max()
    assert result.history.loc[result.best_epoch - 1, "selection_auc"] == result.selection_auc


def test_planted_slice_gets_the_attention(toy):
    bags, labels, fit, select, result = toy
    validation = ~(fit | select)
    mean_weight = result.weights[validation].mean(axis=0)
    assert np.argmax(mean_weight) == SIGNAL and mean_weight[SIGNAL] > 3 / 11, mean_weight.round(3)
    assert np.argmax(result.weights.mean(axis=0)) == SIGNAL
    assert cnn_train.safe_auc(labels[validation], result.prob[validation]) > 0.9
    assert result.selection_auc > 0.9


def test_validation_rows_influence_nothing(toy):
    bags, labels, fit, select, result = toy
    neither = ~(fit | select)
    rng = np.random.default_rng(99)
    poisoned, flipped = bags.copy(), labels.copy()
    poisoned[neither] = rng.normal(5, 3, poisoned[neither].shape)
    flipped[neither] = 1 - flipped[neither]
    other = train_abmil(poisoned, flipped, fit, select, CFG, seed=7)
    used = fit | select
    assert other.best_epoch == result.best_epoch
    assert other.history.equals(result.history)
    np.testing.assert_array_equal(other.prob[used], result.prob[used])
    np.testing.assert_array_equal(other.weights[used], result.weights[used])


def test_same_seed_same_numbers(toy):
    bags, labels, fit, select, result = toy
    again = train_abmil(bags, labels, fit, select, CFG, seed=7)
    np.testing.assert_array_equal(again.prob, result.prob)
    np.testing.assert_array_equal(again.weights, result.weights)
    assert again.best_epoch == result.best_epoch


def test_one_class_selection_keeps_the_last_epoch():
    bags, labels, fit, select = planted(n=40)
    select = select & (labels == 1)
    result = train_abmil(bags, labels, fit, select, ABMILConfig(epochs=7, patience=2), seed=1)
    assert result.best_epoch == 7 and len(result.history) == 7 and np.isnan(result.selection_auc)
    assert any("last epoch" in note for note in result.notes)


def test_errors_name_the_problem():
    bags, labels, fit, select = planted(n=40)
    with pytest.raises(ValueError, match="one class"):
        train_abmil(bags, labels, fit & (labels == 0), select, CFG, seed=0)
    with pytest.raises(ValueError, match="labels for"):
        train_abmil(bags, labels[:-1], fit, select, CFG, seed=0)
    with pytest.raises(ValueError, match="mask has shape"):
        train_abmil(bags, labels, fit[:-1], select, CFG, seed=0)
    with pytest.raises(ValueError, match=r"\(n_patients, K slices, D\)"):
        train_abmil(bags[:, 0], labels, fit, select, CFG, seed=0)


def test_slice_embeddings_are_the_heads_input():
    torch.manual_seed(0)
    model = cnn.build_model("resnet18").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 256, (3, 2, 40, 40), dtype=np.uint8)
    emb = slice_embeddings(model, "resnet18", images, size=32, batch_size=4)
    assert emb.shape == (3, 2, 512) and emb.dtype == np.float32
    assert model.training and isinstance(model.fc, torch.nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    logits = torch.from_numpy(emb.reshape(6, 512)) @ model.fc.weight.T + model.fc.bias
    prob = logits.detach().softmax(dim=1)[:, 1].double().numpy()
    data = cnn_train.SliceTensors.from_stacks(images, np.zeros(3), torch.device("cpu"))
    expected = cnn_train.predict_probabilities(model, data, np.arange(6), 32, CNNConfig(bf16_cpu=False))
    np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_slice_embeddings_of_densenet():
    torch.manual_seed(0)
    model = cnn.build_model("densenet121")
    images = np.zeros((1, 1, 32, 32), np.uint8)
    assert slice_embeddings(model, "densenet121", images, size=32).shape == (1, 1, 1024)
    assert isinstance(model.classifier, torch.nn.Linear)


def test_attention_figure(toy):
    bags, labels, fit, select, result = toy
    split = np.where(fit | select, "train", "validation")
    fig = attention_by_offset(result.weights, list(range(-5, 6)), split)
    assert isinstance(fig, Figure)
    plt.close(fig)
