"""Make a local folder really unwritable for a test, also when the tests run as root.

``chmod`` does not stop root, so as root the tree is made immutable (``chattr -R +i``: every
write fails with ``PermissionError: [Errno 1] Operation not permitted``); as any other user
its write bits are removed (``[Errno 13] Permission denied``).  Both are real operating-system
permission errors; both are undone when the block ends.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["unwritable"]


def _chmod_tree(root: Path, *, writable: bool) -> None:
    bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


@contextmanager
def unwritable(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Within the block, nothing in the folder *path* (or below it) can be created or changed.

    Parameters
    ----------
    path
        An existing local folder.

    Yields
    ------
    pathlib.Path
        The folder.
    """
    root = Path(path)
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("chattr")
    if as_root:
        subprocess.run(["chattr", "-R", "+i", str(root)], check=True, capture_output=True)
    else:
        _chmod_tree(root, writable=False)
    try:
        yield root
    finally:
        if as_root:
            subprocess.run(["chattr", "-R", "-i", str(root)], check=True, capture_output=True)
        else:
            _chmod_tree(root, writable=True)
