"""Advice for a zip store: commands that write run on an extracted copy (pure).

zarr-dask-utils reads zip files but never writes into them (a member cannot be replaced in
place; see :mod:`~zarr_dask_utils._core.storage.zipfiles`), so ``zdu consolidate`` or
``zdu repair --apply`` on the zip itself would be refused.  :func:`advice_for_zip` rewrites
such advice so that it works: extract a copy with Python's own ``zipfile`` command line, run
the same ``zdu`` command on the copy, zip it again if a zip is needed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from zarr_dask_utils._core.pure.reports import Finding

__all__ = ["WRITING_VERBS", "advice_for_zip", "extract_command"]

#: ``zdu`` verbs that write into the store they are given.
WRITING_VERBS = ("consolidate", "repair")
_WRITING = re.compile(r"`zdu (" + "|".join(WRITING_VERBS) + r")((?: [^`]*)?)`")


def extract_command() -> str:
    """The command extracting the zip ``STORE`` into the folder ``COPY``."""
    return "python -m zipfile -e STORE COPY"


def _on_copy(match: re.Match[str], target: str) -> str:
    verb, rest = match.group(1), match.group(2).split()
    args = [target if w == "STORE" else w for w in rest]
    if target not in args:
        args.insert(0, target)
    return f"`zdu {verb} {' '.join(args)}`"


def advice_for_zip(findings: Iterable[Finding], inner_path: str = "") -> list[Finding]:
    """*findings*, with advice that would write into the zip rewritten for an extracted copy.

    Parameters
    ----------
    findings
        Findings about a hierarchy stored in a zip file.
    inner_path
        The hierarchy's path inside the zip (``""``: its root).

    Examples
    --------
    >>> f = Finding("info", "consolidated-missing", "zarr.json", "none", "run `zdu consolidate`")
    >>> advice_for_zip([f])[0].fix  # doctest: +NORMALIZE_WHITESPACE
    'zdu does not write into zip files, so this can only be done in an extracted copy:
    `python -m zipfile -e STORE COPY`, then run `zdu consolidate COPY`; zip the copy again if
    you need a zip'
    """
    target = f"COPY/{inner_path.strip('/')}" if inner_path.strip("/") else "COPY"
    out: list[Finding] = []
    for finding in findings:
        fix = finding.fix
        if fix and _WRITING.search(fix):
            rewritten = _WRITING.sub(lambda m: _on_copy(m, target), fix)
            fix = (
                "zdu does not write into zip files, so this can only be done in an extracted "
                f"copy: `{extract_command()}`, then {rewritten}; zip the copy again if you need "
                "a zip"
            )
            finding = dataclasses.replace(finding, fix=fix)
        out.append(finding)
    return out
