"""The README shows the main commands and its numbers come from the JSON the code wrote."""

from __future__ import annotations

from readme_tables import README, TABLES, render


def test_readme_tables_match_the_json():
    text = README.read_text()
    for name in TABLES:
        assert f"<!-- {name}:start -->" in text, f"README lacks the generated {name} table"
    assert render(text) == text, "README is stale: run `make readme`"


def test_readme_shows_setup_test_and_deploy_first():
    text = README.read_text()
    first_block = text.split("```")[1]
    assert "make setup" in first_block and "make test" in first_block and "make deploy" in first_block


def test_bench_ratios_below_one_read_as_slower():
    # a ratio under 1 is a slowdown: the bench table once printed "0.41x faster" for 2.4x slower
    from readme_tables import speed_ratio

    assert speed_ratio(2.44) == "2.44x faster"
    assert speed_ratio(0.41) == "2.44x slower"
    assert speed_ratio(1.0) == "1.00x faster"


def test_tvm_table_says_which_rows_used_records_tuned_earlier():
    # a row built from a tuning database filled by an earlier run is not "default schedules, no tuning"
    from readme_tables import tvm_table

    build = {"records_before": 0, "tuned": False}
    t = {"trials_per_library": 0, "threads": 1, "tvm_target": {"mcpu": "znver5"},
         "host": {"model": "cpu", "cores": 2, "isa": ["avx2"]},
         "models": [{"model": "v2_1.0", "weights": "imagenet1k_v1",
                     "latency_ms": {"onnxruntime_fp32": 4.0, "onnxruntime_int8": 2.0, "tvm_fp32": 6.0, "tvm_int8": 1.5},
                     "ratios": {"tvm_fp32_over_onnxruntime_fp32": 1.5, "tvm_int8_over_onnxruntime_int8": 0.75,
                                "tvm_int8_over_tvm_fp32": 0.25},
                     "builds": {"fp32": {**build, "records_before": 1161, "tuned": True}, "int8": build}}]}
    caption = tvm_table(t).splitlines()[0]
    assert "v2_1.0 fp32 from 1,161 records tuned earlier" in caption and "no tuning" not in caption
    t["models"][0]["builds"]["fp32"] = build
    assert "no search in this run, default schedules" in tvm_table(t).splitlines()[0]
