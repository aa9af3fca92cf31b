"""TFLite Micro artifacts of detectors and segmenters are checked against LiteRT's reference kernels the task's
way: every output, decoded into masks or boxes, not the first output read as classification logits (which
crashed `make task-table` on the Cortex-M7 segmenter deploy)."""

from __future__ import annotations

from edgemb.stages.compile import compile_model


def test_a_segmenter_on_tflite_micro_agrees_with_litert_reference_kernels_on_its_masks(tmp_path):
    report = compile_model("lraspp_v3l_0.5", "cortex-m7", tmp_path, backend="tflm", calib="synthdet:train:32",
                           eval_spec="synthdet:test:4")
    (artifact,) = report["artifacts"]
    assert artifact["status"] == "ok", artifact.get("detail")
    reference = artifact["reference_agreement"]
    assert reference["task"] == "segmentation" and reference["n"] == 4
    assert reference["agreement_basis"] == "pixels with the float mask's class"
    # TFLite Micro's kernels are LiteRT's reference kernels compiled for the host: the masks are the same
    assert reference["agreement"] == reference["mask_agreement"] >= 0.99
    assert set(reference["sqnr_db_outputs"]) == {"seg_logits"} and reference["sqnr_db"] > 30
