"""README tables rendered from the JSON the code wrote, never typed by hand.

Each table sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers; `make readme` rewrites them
and a test fails when the README and the JSON disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edgemb.zoo.weights import reference_entries

README = Path(__file__).resolve().parent.parent / "README.md"


def reference_table() -> str:
    """Markdown table of the shipped reference models with their measured accuracy."""
    lines = ["| model | resolution | classes | top-1 (Fashion-MNIST test, n) | epochs | size | sha256 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in reference_entries().items():
        acc = entry["accuracy"]
        lines.append(
            f"| `{name}` | {entry['preprocessing']['resolution']} | {entry['num_classes']} | "
            f"{acc['top1']:.2%} (n={acc['n']:,}) | {entry['recipe']['epochs']} | "
            f"{entry['size_bytes'] / 1e6:.2f} MB | `{entry['sha256'][:12]}` |"
        )
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {"reference-models": reference_table}


def render(text: str) -> str:
    """Replace every known marked section of `text` with freshly rendered content."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m, make=make: m.group(1) + make() + m.group(2), text)
    return text


def update_readme(path: Path = README) -> bool:
    """Rewrite the README's generated tables; True when something changed."""
    old = path.read_text()
    new = render(old)
    if new != old:
        path.write_text(new)
    return new != old
