"""progress(): a disabled bar must not import tqdm's notebook machinery (it warns without ipywidgets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env: str) -> str:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True)
    return done.stdout.strip()


def test_disabled_bar_is_plain_tqdm_and_counts():
    code = (
        "import sys, tqdm.std\n"
        "from t1046lab._progress import progress\n"
        "bar = progress(range(3), total=3)\n"
        "print(type(bar) is tqdm.std.tqdm, bar.disable, sum(bar), 'tqdm.autonotebook' in sys.modules)\n"
    )
    assert _run(code, TQDM_DISABLE="1") == "True True 3 False"

