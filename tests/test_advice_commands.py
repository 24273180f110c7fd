"""Advice that names a command is run; README examples run verbatim (issue 12, items 8, 10, 12)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Issue 12, item 12: README examples
# ---------------------------------------------------------------------------------------------


def _readme_block(marker: str) -> str:
    """The README ```python block containing *marker*."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} README python blocks contain {marker!r}"
    return found[0]


def _run_script(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
        check=False,
    )


@pytest.mark.slow
def test_readme_zarr_debugger_example_runs_verbatim(tmp_path: Path) -> None:
    code = _readme_block("ZarrDebugger()")
    done = _run_script(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # explain_zarr_error printed, then the four views of the trace report
    assert "zarr_format" in done.stdout or "format" in done.stdout
    assert "get" in done.stdout


def test_readme_client_example_is_guarded() -> None:
    code = _readme_block("client = Client()")
    guard = code.index('if __name__ == "__main__":')
    assert guard < code.index("client = Client()")
    assert guard < code.index("zdu.validate_metadata(")
    assert "__main__" in (ROOT / "README.md").read_text().split("client = Client()")[1][:2000]
