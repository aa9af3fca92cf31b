"""Weights: local files, safetensors, refused pickles, verified downloads from a real local HTTP server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from edgemb.errors import EdgembError
from edgemb.zoo import parse_model_name
from edgemb.zoo.weights import catalog
from edgemb.zoo.weights.fetch import download
from edgemb.zoo.weights.load import load_model, read_state_dict, resolve_weights


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test downloads into its own cache folder."""
    monkeypatch.setenv("EDGEMB_CACHE", str(tmp_path / "cache"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_v2(path: Path, classes: int = 10, alpha: str = "0.35") -> dict[str, torch.Tensor]:
    state = parse_model_name(f"v2_{alpha}").build(classes).state_dict()
    torch.save(state, path)
    return state


def test_pt_checkpoint_round_trips_strictly_with_class_count_from_the_file(tmp_path, randomised):
    model = randomised(parse_model_name("v3s_1.0").build(10))
    torch.save(model.state_dict(), tmp_path / "w.pth")
    loaded, info = load_model(parse_model_name("v3s_1.0"), str(tmp_path / "w.pth"))
    assert loaded.classifier[-1].out_features == 10
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert info.sha256 == _sha(tmp_path / "w.pth")


def test_safetensors_checkpoint_loads(tmp_path):
    state = parse_model_name("v1_0.25").build(5).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    model, _ = load_model(parse_model_name("v1_0.25"), str(tmp_path / "w.safetensors"))
    assert model.classifier[-1].out_features == 5


def test_wrapped_and_dataparallel_checkpoints_are_unwrapped(tmp_path):
    state = parse_model_name("v2_0.35").build(3).state_dict()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    assert set(read_state_dict(tmp_path / "w.pt")) == set(state)


class NeedsCode:
    """An object whose unpickling would run this module's code."""


def test_pickle_that_needs_code_is_refused(tmp_path):
    torch.save({"weights": NeedsCode()}, tmp_path / "evil.pt")
    with pytest.raises(EdgembError, match="refuses to execute"):
        read_state_dict(tmp_path / "evil.pt")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_files_are_one_line_errors(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    state = parse_model_name("v1_0.25").build(5).state_dict()
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgembError, match="truncated") as info:
        read_state_dict(path)
    assert "\n" not in str(info.value)


def test_checkpoint_for_another_architecture_reports_counts_and_a_guess(tmp_path):
    _save_v2(tmp_path / "w.pt", alpha="0.5")
    with pytest.raises(EdgembError) as info:
        load_model(parse_model_name("v2_1.0"), str(tmp_path / "w.pt"))
    message = str(info.value)
    assert "0 missing keys" in message and "shape mismatches" in message
    assert "looks like a v2_0.5 checkpoint" in message


def test_checkpoint_of_another_family_counts_missing_and_unexpected(tmp_path):
    torch.save(parse_model_name("v1_0.25").build(10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(EdgembError, match=r"does not fit v3s_1.0: \d+ missing keys, \d+ unexpected keys"):
        load_model(parse_model_name("v3s_1.0"), str(tmp_path / "w.pt"))


def test_download_verifies_caches_and_does_not_fetch_twice(tmp_path, served):
    root, base, hits = served
    _save_v2(root / "w.pt")
    digest = _sha(root / "w.pt")
    first = download(f"{base}/w.pt", digest)
    second = download(f"{base}/w.pt", digest[:8])
    assert first == second and _sha(first) == digest
    assert hits == ["/w.pt"], "a verified cached file must not be fetched again"


def test_download_with_wrong_sha256_keeps_nothing(tmp_path, served):
    root, base, _ = served
    _save_v2(root / "w.pt")
    with pytest.raises(EdgembError, match="sha256 mismatch"):
        download(f"{base}/w.pt", "0" * 64, dest_dir=tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_download_of_missing_file_and_unreachable_server_are_clear(served):
    _, base, _ = served
    with pytest.raises(EdgembError, match="could not download"):
        download(f"{base}/absent.pt", "a" * 64)
    with pytest.raises(EdgembError, match="could not download"):
        download("http://127.0.0.1:9/w.pt", "a" * 64, timeout=2)


def test_url_weights_need_a_hash_and_accept_a_fragment(served):
    root, base, _ = served
    _save_v2(root / "w.pt")
    spec = parse_model_name("v2_0.35")
    with pytest.raises(EdgembError, match="--sha256"):
        resolve_weights(f"{base}/w.pt", spec)
    loaded = resolve_weights(f"{base}/w.pt#sha256={_sha(root / 'w.pt')}", spec)
    assert loaded.source == f"{base}/w.pt"


def test_file_url_is_supported(tmp_path):
    _save_v2(tmp_path / "w.pt")
    model, _ = load_model(parse_model_name("v2_0.35"), (tmp_path / "w.pt").as_uri(), _sha(tmp_path / "w.pt"))
    assert model.classifier[-1].out_features == 10


def test_named_torchvision_entry_resolves_through_the_download_code(tmp_path, served, monkeypatch):
    root, base, hits = served
    state = parse_model_name("v3s_1.0").build(1000).state_dict()
    torch.save(state, root / "mobilenet_v3_small-test.pth")
    entry = catalog.TORCHVISION_WEIGHTS[-1]
    assert entry.model == "v3s_1.0" and entry.url.startswith("https://download.pytorch.org/")
    local = catalog.NamedWeights(entry.model, entry.tag, f"{base}/mobilenet_v3_small-test.pth",
                                 _sha(root / "mobilenet_v3_small-test.pth")[:8], 1000, entry.preprocessing)
    monkeypatch.setattr(catalog, "TORCHVISION_WEIGHTS", (local,))
    model, loaded = load_model(parse_model_name("v3s_1.0"), "imagenet1k_v1")
    assert loaded.named is local and hits == ["/mobilenet_v3_small-test.pth"]
    assert model.classifier[-1].out_features == 1000


def test_unknown_weights_value_lists_named_checkpoints():
    with pytest.raises(EdgembError, match="imagenet1k_v1, imagenet1k_v2"):
        resolve_weights("no-such-file.pt", parse_model_name("v2_1.0"))


def test_malformed_sha256_is_rejected(tmp_path):
    _save_v2(tmp_path / "w.pt")
    with pytest.raises(EdgembError, match="hex digits"):
        resolve_weights(str(tmp_path / "w.pt"), parse_model_name("v2_0.35"), sha256="xyz")
    with pytest.raises(EdgembError, match="does not match"):
        resolve_weights(str(tmp_path / "w.pt"), parse_model_name("v2_0.35"), sha256="0" * 64)


def test_the_weights_facade_hands_out_each_name_from_the_module_that_defines_it():
    # edgemb.zoo.weights re-exports catalog/fetch/load and the prepared model for older callers; a name whose
    # entry points at the wrong module, or at a name that moved or went, fails here rather than at a caller.
    import importlib

    import edgemb.zoo.weights as facade

    for name, home in facade._HOME.items():
        defined = getattr(importlib.import_module(home), name)
        assert getattr(facade, name) is defined, f"{name} from {home}"
        if callable(defined) and hasattr(defined, "__module__"):
            assert defined.__module__ == home, f"{name} is defined in {defined.__module__}, not {home}"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = facade.no_such_name


@pytest.mark.parametrize("model", ["v1_0.25", "ssdlite_v2_0.35"])
def test_float_outputs_head_slices_the_cache_or_runs_only_the_first_samples(model, monkeypatch):
    """A warm deploy's report needs a few float outputs: never the whole evaluation set again."""
    import numpy as np

    from edgemb.zoo import prepared as prepared_module
    from edgemb.zoo.prepared import prepare_model

    prepared = prepare_model(model, "ref")
    r = prepared.spec.resolution
    x = np.random.default_rng(0).standard_normal((6, 3, r, r)).astype(np.float32)
    full = prepared.float_outputs(x)
    for head, whole in zip(prepared.float_outputs_head(x, 2), full, strict=True):
        assert head.shape[0] == 2 and np.array_equal(head, whole[:2])  # sliced from the cache
    seen: list[int] = []
    for name in ("predict", "predict_outputs"):
        original = getattr(prepared_module, name)
        monkeypatch.setattr(prepared_module, name, lambda m, batch, *a, _f=original, **k: seen.append(len(batch))
                            or _f(m, batch, *a, **k))
    fresh = prepare_model(model, "ref")
    for head, whole in zip(fresh.float_outputs_head(x, 2), full, strict=True):
        np.testing.assert_allclose(head, whole[:2], rtol=1e-4, atol=1e-4)
    assert seen == [2], "only the first samples are computed when the cache does not hold x"
