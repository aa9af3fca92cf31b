"""What must hold before a deploy touches its folder: sane settings, one run per folder, no stale verdict.

A deploy folder holds one report.json whose `passed` users and scripts trust. Two rules keep it honest:
a second deploy into the same folder fails at once (exit 2) instead of deleting the first one's stage under
it, and a run with different settings removes the previous report the moment it starts, so an interrupted or
failed rerun never leaves an old PASS beside new settings.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgemb.artifacts import write_json
from edgemb.calibration_check import calibration_warning
from edgemb.limits import check_limits
from edgemb.locking import LOCK_NAME, file_lock

REPORT_FILES = ("report.json", "report.html")


def check_settings(settings: Any) -> None:
    """Refuse numbers that make no sense before any work starts, by the CLI's own limits (edgemb.limits): the one
    check of a deploy's numbers, also when they come from `edgemb deploy` flags (exit 2 there)."""
    check_limits(asdict(settings))


def run_key(settings: Any, target: Any) -> str:
    """What a report answers: the user's settings and the target description (its file's text)."""
    target_text = target.path.read_text() if getattr(target, "path", None) else json.dumps(target.to_dict())
    data = {"settings": asdict(settings), "target": target_text}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def invalidate_stale_report(root: Path, key: str) -> bool:
    """Remove report.json/report.html when they answer other settings; True when something was removed."""
    report = root / "report.json"
    if not report.exists() and not (root / "report.html").exists():
        return False
    try:
        recorded = json.loads(report.read_text()).get("run_key")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded == key:
        return False
    for name in REPORT_FILES:
        (root / name).unlink(missing_ok=True)
    return True


def one_run_per_folder(deploy: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Wrap `deploy(settings, out_root, log)`: check settings, lock the folder, drop a stale report, then run."""

    @functools.wraps(deploy)
    def guarded(settings: Any, out_root: Path = Path("build"), log: Callable[[str], None] = print
                ) -> dict[str, Any]:
        from edgemb.targets import get_target
        from edgemb.zoo import parse_model_name

        check_settings(settings)
        parse_model_name(settings.model)  # a bad name fails before any folder is made
        target = get_target(settings.target)
        root = Path(out_root) / target.name / settings.model
        created = not root.exists()
        try:
            return _locked_run(deploy, settings, out_root, log, target, root)
        finally:
            if created and root.is_dir() and [p.name for p in root.iterdir()] == [LOCK_NAME]:
                (root / LOCK_NAME).unlink(missing_ok=True)  # nothing was built: leave no folder behind
                _remove_empty_parents(root, Path(out_root))

    return guarded


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """Remove `folder` and its empty parents up to (not including) `stop`."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _locked_run(deploy: Callable[..., dict[str, Any]], settings: Any, out_root: Path, log: Callable[[str], None],
                target: Any, root: Path) -> dict[str, Any]:
    """The deploy under the folder lock, after removing a report that answered other settings."""
    with file_lock(root / LOCK_NAME, f"deploy folder {root}", wait=False):
        key = run_key(settings, target)
        if invalidate_stale_report(root, key):
            log(f"removed the previous report in {root}: it answered other settings")
        report = deploy(settings, out_root, log)
        report["run_key"] = key  # tells the next run whether this report is its own
        calibration = (report.get("data") or {}).get("calibration") or {}
        warning = calibration_warning(calibration.get("n"), calibration.get("spec"))
        report["warnings"] = [*report.get("warnings", []), *([warning] if warning else [])]
        write_json(root / "report.json", report)
        if warning:
            from edgemb.stages.report_html import write_html

            write_html(report, root / "report.html")
        return report
