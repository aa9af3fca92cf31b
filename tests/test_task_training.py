"""Training the ImageNet-initialised task models: lraspp_v2, the backbone init, frozen-prefix caching and resuming."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from edgemb.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from edgemb.errors import EdgembError
from edgemb.training import checkpoints
from edgemb.training import synthdet as training
from edgemb.training.synthdet import TASK_RECIPES, TaskRecipe, build_task_model, features_path, recipe_preprocessing
from edgemb.zoo import parse_model_name
from edgemb.zoo.weights.catalog import REFERENCE_DIR, TORCHVISION_WEIGHTS, reference_entries
from edgemb.zoo.weights.fetch import local_checkpoint


def test_lraspp_v2_has_a_stride_8_low_tap_and_a_dilated_stride_16_end():
    model = parse_model_name("lraspp_v2_0.35").build(6)
    assert model.low_index == 6  # the end of the stride-8 stage
    last = [m for m in model.backbone[14:].modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert last and all(m.stride == (1, 1) and m.dilation == (2, 2) for m in last)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert model(x).shape == (2, 6, 12, 12)
        assert model.backbone[:7](x).shape[-1] == 12 and model.backbone(x).shape[-1] == 6


@pytest.mark.parametrize("name,blocks", [("lraspp_v2_0.35", 7), ("ssdlite_v2_0.35", 7), ("ssdlite_v2_0.35", 15)])
def test_forward_from_a_prefix_output_is_the_forward(name, blocks):
    model = parse_model_name(name).build(6)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        whole = model(x)
        rest = model(model.backbone_prefix(blocks)(x), blocks)
    for a, b in zip(whole if isinstance(whole, tuple) else (whole,), rest if isinstance(rest, tuple) else (rest,),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_prefix_may_not_pass_the_first_tap():
    with pytest.raises(EdgembError, match="low tap"):
        parse_model_name("lraspp_v2_0.35").build(6).backbone_prefix(8)
    with pytest.raises(EdgembError, match="first detection map"):
        parse_model_name("ssdlite_v2_0.35").build(6).backbone_prefix(16)


def test_lraspp_v2_exports_with_parity(tmp_path, randomised):
    from edgemb.stages.export import export_simplified, onnx_parity

    model = randomised(parse_model_name("lraspp_v2_0.35").build(6))
    path = export_simplified(model, 96, tmp_path / "m.onnx")
    parity = onnx_parity(model, path, 96, inputs=torch.randn(4, 3, 96, 96).numpy())
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("name", ["ssdlite_v2_1.0@96", "lraspp_v2_1.0@96"])
def test_imagenet_init_copies_the_checkpoint_features(name):
    entry = next(w for w in TORCHVISION_WEIGHTS if w.model == "v2_1.0" and w.tag == "imagenet1k_v1")
    local = local_checkpoint(entry)
    if local is None:
        pytest.skip("the ImageNet MobileNetV2 checkpoint is not on this machine (`make setup` installs it)")
    features = {k: v for k, v in torch.load(local[0], weights_only=True).items() if k.startswith("features.")}
    model = build_task_model(TaskRecipe(name, epochs=1, init="imagenet1k_v1"))
    backbone = model.backbone.features if name.startswith("ssdlite") else model.backbone
    # SSDLite splits the stack at block 14's expansion, which keeps the tensors' order
    copied = list(backbone.state_dict().values())
    assert len(copied) == len(features)
    for (key, expected), got in zip(features.items(), copied, strict=True):
        assert torch.equal(expected, got), key
    assert recipe_preprocessing(TaskRecipe(name, epochs=1, init="imagenet1k_v1")).mean == IMAGENET_MEAN


def test_imagenet_recipes_use_the_imagenet_normalization_and_old_recipes_record_as_shipped():
    for name in ("ssdlite_v2_1.0", "lraspp_v2_1.0"):
        pp = recipe_preprocessing(TASK_RECIPES[name])
        assert (pp.mean, pp.std) == (IMAGENET_MEAN, IMAGENET_STD) and TASK_RECIPES[name].frozen_prefix > 0
    assert recipe_preprocessing(TASK_RECIPES["ssdlite_v2_0.35"]).mean == (0.5, 0.5, 0.5)
    # the recorded recipe (manifest and weights metadata) is what the code's recipe writes: fields added later
    # appear only when set
    for name, entry in reference_entries("detection", "segmentation").items():
        assert entry["recipe"] == TASK_RECIPES[name].as_dict(), name
        with safe_open(str(REFERENCE_DIR / entry["file"]), "pt") as handle:
            assert json.loads(handle.metadata()["recipe"]) == TASK_RECIPES[name].as_dict(), name


class Interrupted(Exception):
    """Stands for a session that ends (Ctrl-C, logout) right after a checkpoint."""


def _train(recipe, out_dir, cache, monkeypatch, stop_after=None, log=False):
    """Train in a cache folder of its own; with stop_after, the session ends after that many checkpoints."""
    monkeypatch.setenv("EDGEMB_CACHE", str(cache))
    saves = []

    def save(folder, state):
        path = checkpoints.save_checkpoint(folder, state)
        saves.append(path)
        if stop_after is not None and len(saves) == stop_after:
            raise Interrupted
        return path

    monkeypatch.setattr(training, "save_checkpoint", save)
    return training.train_task_reference(recipe, out_dir, log=log)


@pytest.mark.parametrize("name,stop_after", [("ssdlite_v2_0.35@64", 1), ("lraspp_v2_0.35@64", 2)])
def test_frozen_prefix_training_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys, name, stop_after):
    # 16 images in batches of 4: 4 steps per epoch, checkpoints after step 3 and at each epoch's end; stopping
    # after the first resumes mid-epoch, after the second at an epoch boundary
    recipe = TaskRecipe(name, epochs=2, batch_size=4, train_data="synthdet:train:16", eval_data="synthdet:test:4",
                        frozen_prefix=7, checkpoint_steps=3)
    whole = _train(recipe, tmp_path / "whole", tmp_path / "cache-a", monkeypatch)
    with pytest.raises(Interrupted):
        _train(recipe, tmp_path / "resumed", tmp_path / "cache-b", monkeypatch, stop_after=stop_after)
    capsys.readouterr()
    resumed = _train(recipe, tmp_path / "resumed", tmp_path / "cache-b", monkeypatch, log=True)
    where = "epoch 1 of 2, after step 3" if stop_after == 1 else "epoch 2 of 2, after step 0"
    err = capsys.readouterr().err
    assert f"note: {name}: resumed from the checkpoint" in err and where in err
    assert resumed["sha256"] == whole["sha256"]
    assert [(h["epoch"], h["loss"]) for h in resumed["history"]] == [(h["epoch"], h["loss"]) for h in whole["history"]]
    assert resumed["recipe"] == recipe.as_dict() and resumed["recipe"]["frozen_prefix"] == 7
    # the frozen blocks (weights and BatchNorm statistics) are the initial ones, up to the fp16 of the shipped file
    torch.manual_seed(recipe.seed)
    initial = build_task_model(recipe).backbone_prefix(7).state_dict()
    shipped = parse_model_name(name).build(6)
    shipped.load_state_dict({k: v.float() for k, v in load_file(str(tmp_path / "whole" / whole["file"])).items()})
    trained = shipped.backbone_prefix(7).state_dict()
    for key, tensor in initial.items():
        assert torch.equal(tensor.half().float() if tensor.is_floating_point() else tensor, trained[key]), key
    folders = sorted((tmp_path / "cache-b" / "training").iterdir())
    features, checkpoints = (f for f in folders if f.name.startswith(f"{name}-features-")), \
        [f for f in folders if not f.name.startswith(f"{name}-features-")]
    assert (next(features) / "features.npy").is_file() and len(checkpoints) == 1
    assert sorted(p.name for p in checkpoints[0].glob("checkpoint-*")) == ["checkpoint-e002-s00000.pt"]
    # the cached features depend on the frozen blocks and the images, not on the schedule: a recipe with another
    # epoch count or learning rate reuses them, one with another prefix or data does not
    assert features_path(replace(recipe, epochs=5, lr=1e-2)) == features_path(recipe)
    assert features_path(replace(recipe, frozen_prefix=4)) != features_path(recipe)
    assert features_path(replace(recipe, train_data="synthdet:train:32")) != features_path(recipe)
