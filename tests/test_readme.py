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
