"""Every script in examples/ runs at a tiny size and learns something: each is
imported from its path and its main(argv) called in-process, returning its metrics."""
import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run(name, *argv):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(argv))


def decreased(losses, factor=0.9):
    """The mean of the last fifth of the losses is below factor x the first fifth's."""
    k = max(1, len(losses) // 5)
    return np.mean(losses[-k:]) < factor * np.mean(losses[:k])


def test_logistic_regression_fits_the_linear_rule(capsys):
    out = run("logistic_regression", "--samples", "600", "--steps", "80")
    assert decreased(out["losses"], 0.8)
    assert out["test_accuracy"] > 0.85 and out["cosine"] > 0.9
    assert "data: synthetic" in capsys.readouterr().out


def test_xor_mlp_solves_xor():
    out = run("xor_mlp", "--epochs", "300", "--copies", "8")
    assert decreased(out["losses"], 0.2)
    assert out["accuracy"] == 1.0
    np.testing.assert_array_equal(out["corner_probs"] > 0.5, [False, True, True, False])


def test_mnist_cnn_tutorial_on_digits(capsys, tmp_path):
    pytest.importorskip("sklearn")
    plot = tmp_path / "history.png"
    out = run("mnist_cnn", "--data", "digits", "--limit", "384", "--test-limit", "200",
              "--epochs", "2", "--verbose", "0", "--plot", str(plot))
    assert out["data"].startswith("scikit-learn digits")
    assert out["history"]["loss"][-1] < out["history"]["loss"][0]
    assert out["test_accuracy"] > 0.3 and out["images_per_s"] > 0  # chance is 0.1
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "images/s" in printed
    if importlib.util.find_spec("matplotlib") is not None:
        assert out["plot"] == str(plot) and plot.read_bytes()[:4] == b"\x89PNG"
        assert str(plot) in printed


def test_cifar10_cnn_on_the_synthetic_stand_in(capsys):
    out = run("cifar10_cnn", "--synthetic", "--limit", "512", "--test-limit", "128",
              "--epochs", "3", "--batch-size", "64", "--verbose", "0")
    assert out["data"].startswith("synthetic stand-in")
    assert out["history"]["loss"][-1] < out["history"]["loss"][0]
    assert out["test_accuracy"] > 0.2
    assert "synthetic stand-in" in capsys.readouterr().out


def test_iris_mlp():
    pytest.importorskip("sklearn")
    out = run("iris_mlp", "--epochs", "40")
    assert decreased(out["losses"], 0.5)
    assert out["test_accuracy"] > 0.8


def test_digits_cnn():
    pytest.importorskip("sklearn")
    out = run("digits_cnn", "--epochs", "2")
    assert out["losses"][-1] < out["losses"][0]
    assert out["test_accuracy"] > 0.8


def test_text_classifier_beats_the_majority_class():
    out = run("text_classifier", "--topics", "3", "--limit", "600", "--epochs", "4",
              "--length", "16")
    assert out["losses"][-1] < out["losses"][0]
    assert out["test_accuracy"] > out["majority"] + 0.1


def test_char_lstm_learns_and_samples():
    out = run("char_lstm", "--steps", "60", "--hidden", "64", "--length", "32",
              "--val-chars", "3000", "--sample-chars", "40")
    assert decreased(out["losses"], 0.9)
    assert out["val_loss"] < out["unigram_val_loss"]
    assert len(out["sample"]) == len("The ") + 40


def test_gan_ring_samples_move_to_the_ring():
    out = run("gan", "--steps", "150", "--samples", "2000", "--hidden", "64")
    samples = out["samples"]
    assert samples.shape == (2000, 2) and np.isfinite(samples).all()
    # the generator starts near the origin; after training its points spread out
    # toward the radius-2 ring
    assert 1.0 < np.median(np.linalg.norm(samples, axis=1)) < 3.0
    assert 0 <= out["modes_covered"] <= 8


def test_gan_digits_samples():
    pytest.importorskip("sklearn")
    out = run("gan", "--data", "digits", "--steps", "20", "--samples", "16", "--hidden", "64")
    assert out["samples"].shape == (16, 64)
    assert np.all(np.abs(out["samples"]) <= 1)


def test_attention_classifier_beats_chance():
    out = run("attention_classifier", "--steps", "300", "--test-size", "1000")
    assert decreased(out["losses"], 0.97)
    assert out["test_accuracy"] > 0.55


@pytest.mark.parametrize("model,steps,floor", [("mlp", 150, 0.25), ("cnn", 150, 0.3),
                                               ("gru", 40, 0.15)])
def test_mnist1d_models(model, steps, floor):
    pytest.importorskip("mnist1d")
    out = run("mnist1d_models", "--model", model, "--steps", str(steps),
              "--num-samples", "1500")
    assert decreased(out["losses"], 0.9)
    assert out["test_accuracy"] > floor


def test_distillation_student_learns_from_the_teacher(capsys, tmp_path):
    pytest.importorskip("sklearn")
    teacher = tmp_path / "teacher.pydl"
    args = ("--data", "digits", "--teacher-limit", "800", "--limit", "400", "--test-limit",
            "300", "--teacher-epochs", "2", "--teacher", str(teacher))
    out = run("distillation", *args, "--epochs", "3")
    assert out["data"].startswith("scikit-learn digits") and teacher.exists()
    assert decreased(out["losses"], 0.8)
    assert out["student_parameters"] < out["teacher_parameters"] / 10
    assert out["teacher_accuracy"] > 0.3 and out["student_accuracy"] > 0.3  # chance is 0.1
    again = run("distillation", *args, "--epochs", "1")   # the saved teacher, reloaded
    assert again["teacher_accuracy"] == out["teacher_accuracy"]
    assert "distilled at T=2, alpha=0.5" in capsys.readouterr().out


@pytest.mark.parametrize("api", ["nn", "keras"])
def test_transfer_learning_fine_tunes_a_new_head_with_frozen_features(api, tmp_path):
    pytest.importorskip("sklearn")
    out = run("transfer_learning", "--api", api, "--source", "digits", "--pretrain-epochs",
              "3", "--epochs", "4", "--pretrained", str(tmp_path / "model.pydl"))
    assert out["data"] == "digits 0-4 -> digits 5-9"
    assert out["frozen_tensors"] == 8 and out["frozen_unchanged"]
    assert out["losses"][-1] < out["losses"][0]
    assert out["test_accuracy"] > 0.3                     # 5 classes: chance is 0.2
