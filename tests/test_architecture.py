"""The engine's shape: layers that import only downward, no import cycle, no Streamlit, short files.

The import rules are import-linter contracts in pyproject.toml ([tool.importlinter]); this test runs them
the way `lint-imports` does, so CI fails when a change breaks one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_ENGINE_LINES = 600
MAX_PAGE_LINES = 350


def test_import_linter_contracts_are_kept(monkeypatch, capsys):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    result = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert result == 0, report
    assert "0 broken" in report and "4 kept" in report, report


def test_the_cycle_contract_sees_imports_inside_functions(tmp_path, monkeypatch, capsys):
    """The contract that forbids cycles must catch an import hidden inside a function (a copy of the
    package with one such import added is reported broken)."""
    import shutil

    from importlinter.cli import lint_imports

    copy = tmp_path / "cnn_core"
    shutil.copytree(ROOT / "cnn_core", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "data" / "types.py").open("a") as handle:
        handle.write("\n\ndef _probe():\n    from .registry import list_datasets  # noqa: F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in list(__import__("sys").modules) if m == "cnn_core" or m.startswith("cnn_core.")]:
        monkeypatch.delitem(__import__("sys").modules, name)
    result = lint_imports(config_filename=str(tmp_path / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert result != 0
    assert ".types -> .registry" in report


@pytest.mark.parametrize("folder, limit", [("cnn_core", MAX_ENGINE_LINES), ("pages", MAX_PAGE_LINES)])
def test_no_file_is_too_long_to_read(folder, limit):
    too_long = {
        str(path.relative_to(ROOT)): count
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (count := len(path.read_text().splitlines())) > limit
    }
    assert not too_long, f"over {limit} lines: {too_long}"


def test_app_py_is_a_thin_view_too():
    assert len((ROOT / "app.py").read_text().splitlines()) <= MAX_PAGE_LINES


def test_the_web_servers_imports_leave_out_torchvision_and_torchmetrics():
    """The pages' modules import neither at load time: torchmetrics loads torchvision and matplotlib, together
    about 300 MiB of the server's memory (a budget of 1 GB with runs finished and one training). They load where
    a metric is computed or a backbone built, which the training workers do."""
    import subprocess
    import sys

    code = ("import sys, cnn_core.runs, cnn_core.gallery, cnn_core.conv, cnn_core.inference.predict, "
            "cnn_core.inference.explain, cnn_explorer_ui; "
            "print(sorted(m for m in ('torchvision', 'torchmetrics', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip().splitlines()[-1] == "[]"
