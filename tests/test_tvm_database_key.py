"""One TVM tuning-database key (`database_dir`) for a deploy and for scripts/tvm_tuning_bench.py (`make tvm-bench`,
`make tvm-tune-bench`), checked from names alone: no TVM import, no model export, no checkpoint read.

The bench keyed its databases by the name in its MODELS table (`v2_1.0@224` for ImageNet V2, `v2_1.0` for the
64x64 reference model) and a deploy by the canonical spec name (`v2_1.0`, `v2_1.0@64`), each with its own thread
count in the TVM target: the 1,161 records `make tvm-tune-bench` tuned (1 thread) never reached a deploy, and a
2-thread bench of the reference model wrote into the directory the 2-thread ImageNet deploy reads.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import tvm_tuning_bench as bench
from edgemb.backends.tvm_backend import PRECISIONS, database_dir, tvm_target_dict
from edgemb.errors import EdgembError
from edgemb.targets import get_target
from edgemb.zoo.prepared import named_spec, resolved_spec
from edgemb.zoo.registry import parse_model_name
from edgemb.zoo.weights.catalog import named_weights_for

ROOT = Path(__file__).resolve().parents[1]
MCPU = "znver5"  # the x86 target's `mcpu = "host"`, fixed: detecting it would import TVM


@pytest.fixture
def x86(monkeypatch, tmp_path):
    """The x86 target as a deploy on this host loads it (ISA and thread count from this machine), in a scratch
    cache."""
    monkeypatch.setenv("EDGEMB_CACHE", str(tmp_path))
    target = get_target("x86")
    return dataclasses.replace(target, tvm_target={**target.tvm_target, "mcpu": MCPU})


def deploy_database(name: str, weights: str, precision: str, target) -> Path:
    """The database `edgemb deploy NAME --weights WEIGHTS --target ...` compiles from (TvmBackend.build): keyed by
    `prepare_model(name, weights).spec`, resolved here as prepare_model resolves it (a named checkpoint's
    LoadedWeights.preprocessing is its catalog entry's) without reading the checkpoint, and the target's TVM target
    as the backend makes it (num-cores: the target's thread count)."""
    spec = parse_model_name(name)
    spec, _ = resolved_spec(spec, named_weights_for(spec)[weights].preprocessing)
    return database_dir(spec, precision, tvm_target_dict(target), target.isa)


def bench_database(model: str, precision: str, target, threads: int) -> Path:
    """The database the bench uses for a MODELS entry at `--threads threads`."""
    return bench.database_for(model, precision, bench.bench_spec(target, threads), target.isa)


# (bench MODELS key, the names a deploy of the same model may be asked with, its weights, its canonical name)
SAME_MODEL = [("v2_1.0@224", ("v2_1.0", "v2_1.0@224"), "imagenet1k_v1", "v2_1.0"),
              ("v2_1.0", ("v2_1.0", "v2_1.0@64"), "ref", "v2_1.0@64")]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("model", "deploy_names", "weights", "canonical"), SAME_MODEL)
def test_bench_and_deploy_share_the_database(x86, model, deploy_names, weights, canonical, precision):
    """At the x86 target's thread count (`--threads target`) the bench tunes and reads exactly the directory a
    deploy of the same model on this host compiles from, named by the canonical name."""
    assert bench.MODELS[model][0] == weights
    threads = bench.thread_count(bench.TARGET_THREADS)
    assert threads == x86.threads
    ours = bench_database(model, precision, x86, threads)
    for name in deploy_names:
        assert ours == deploy_database(name, weights, precision, x86)
    assert ours.name.startswith(f"{canonical}-{precision}-{MCPU}-")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_two_models_never_share_a_database(x86, precision):
    """ImageNet V2@224 and the 64x64 reference model have different databases at every thread count, for the bench
    and the deploy alike: a 2-thread bench of the reference model no longer writes where the ImageNet deploy
    reads."""
    imagenet, ref = {}, {}
    for threads in (1, 2, 3, 4):
        target = dataclasses.replace(x86, cores=max(x86.cores, threads), threads=threads)
        imagenet[threads] = {bench_database("v2_1.0@224", precision, target, threads),
                             deploy_database("v2_1.0", "imagenet1k_v1", precision, target)}
        ref[threads] = {bench_database("v2_1.0", precision, target, threads),
                        deploy_database("v2_1.0", "ref", precision, target)}
        assert len(imagenet[threads]) == len(ref[threads]) == 1  # bench == deploy at the same thread count
    assert not set().union(*imagenet.values()) & set().union(*ref.values())
    assert bench_database("v2_1.0", precision, x86, 2) != deploy_database("v2_1.0", "imagenet1k_v1", precision, x86)


def test_the_thread_count_is_part_of_the_key(x86):
    """A database tuned at 1 thread is not applied to a 2-thread build (valid code, but chosen for 1 core): the
    bench at its default `--threads 1` and a 2-thread deploy use different directories."""
    one = dataclasses.replace(x86, threads=1)
    two = dataclasses.replace(x86, cores=max(x86.cores, 2), threads=2)
    assert bench_database("v2_1.0@224", "fp32", one, 1) == deploy_database("v2_1.0", "imagenet1k_v1", "fp32", one)
    assert bench_database("v2_1.0@224", "fp32", one, 1) != deploy_database("v2_1.0", "imagenet1k_v1", "fp32", two)


def test_make_tvm_tune_bench_tunes_for_the_x86_deploy():
    """`make tvm-tune-bench` tunes V2@224 with ImageNet weights at the x86 target's thread count, so the database
    it fills is the one `edgemb deploy v2_1.0 --target x86` reads (the test above checks the key)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^tvm-tune-bench:\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    command = recipe.group(1).replace("\\\n", " ")
    assert "scripts/tvm_tuning_bench.py" in command
    assert re.search(r"--models v2_1\.0@224(\s|$)", command)
    assert re.search(rf"--threads {bench.TARGET_THREADS}(\s|$)", command)


def test_named_spec_is_the_name_prepare_model_resolves():
    """The catalog alone gives the canonical name: the weights' resolution unless the name sets one."""
    assert named_spec("v2_1.0@224", "imagenet1k_v1").name == "v2_1.0"
    assert named_spec("v2_1.0", "imagenet1k_v1").name == "v2_1.0"
    assert named_spec("v2_1.0", "ref").name == named_spec("v2_1.0", "reference").name == "v2_1.0@64"
    assert named_spec("v2_1.0@96", "ref").name == "v2_1.0@96"
    assert named_spec("v2_1.0", "random").name == "v2_1.0"
    with pytest.raises(EdgembError, match="not a named checkpoint"):
        named_spec("v2_1.0", "imagenet1k_v9")


def test_database_key_has_the_target_and_the_isa(monkeypatch, tmp_path):
    """An AVX2 host's records are never applied on a VNNI host with the same TVM target, or the other way; the
    resolution (when not the default) and the precision are part of the key too."""
    monkeypatch.setenv("EDGEMB_CACHE", str(tmp_path))
    v2, v2_160 = parse_model_name("v2_1.0@224"), parse_model_name("v2_1.0@160")
    spec = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}
    avx2 = database_dir(v2, "fp32", spec, ("sse4_2", "avx2", "fma"))
    vnni = database_dir(v2, "fp32", spec, ("sse4_2", "avx2", "fma", "avx512f", "avx512_vnni"))
    assert avx2 != vnni
    assert avx2 == database_dir(v2, "fp32", spec, ("fma", "avx2", "sse4_2"))  # order does not matter
    assert avx2 == database_dir(parse_model_name("v2_1.0"), "fp32", spec, ("sse4_2", "avx2", "fma"))
    assert avx2 != database_dir(v2, "fp32", {**spec, "mcpu": "skylake"}, ("sse4_2", "avx2", "fma"))
    assert avx2 != database_dir(v2, "fp32", {**spec, "num-cores": 1}, ("sse4_2", "avx2", "fma"))
    assert avx2 != database_dir(v2, "int8", spec, ("sse4_2", "avx2", "fma"))
    assert avx2 != database_dir(v2_160, "fp32", spec, ("sse4_2", "avx2", "fma"))
    assert avx2.parent == tmp_path / "tvm-tuning"
    assert avx2.name.startswith("v2_1.0-fp32-znver4-")
