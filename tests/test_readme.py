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
