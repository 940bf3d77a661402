"""The detection benchmark's headline tables in docs/benchmarks.md.

Runs exactly what ``t1046lab benchmark`` runs (every detector on every bundled labelled
dataset) and writes its tables into the ``detection-benchmark`` section.

    python benchmarks/bench_detection.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import machine_line, write_section  # noqa: E402

from t1046lab.benchmark import _markdown, headline_table, run_benchmark  # noqa: E402


def main() -> None:
    t0 = time.perf_counter()
    result = run_benchmark()
    seconds = time.perf_counter() - t0
    tables = headline_table(result)
    text = [
        "### Detection benchmark (`t1046lab benchmark`)",
        "",
        f"`python benchmarks/bench_detection.py`: every detector on every bundled labelled dataset, "
        f"default parameters, anomaly detectors fitted on the data they score (no separate baseline). "
        f"Whole run: {seconds:.0f} s.",
        "",
        "Datasets:",
        "",
        _markdown(result.datasets),
        "",
        "Recall per scan type (scan events caught):",
        "",
        _markdown(tables["recall"], ".2f"),
        "",
        "False alerts per 1,000 host-days, by the benign category of the traffic they cover:",
        "",
        _markdown(tables["false_positives"], ".1f"),
        "",
        "Summary:",
        "",
        _markdown(tables["summary"]),
        "",
        "Run time per detector (seconds):",
        "",
        _markdown(result.runtimes, ".2f"),
        "",
        machine_line(),
    ]
    write_section("detection-benchmark", "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
