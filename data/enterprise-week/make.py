"""Regenerate data/enterprise-week exactly: ``python data/enterprise-week/make.py``.

Writes ``connections.parquet`` with :func:`t1046lab.datasets.simulate_enterprise` and the
datasheet ``README.md`` with count tables computed from the file as it loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

#: The exact call; the datasheet quotes it.
PARAMS = {"n_hosts": 50, "days": 7, "scans": "all", "start": "2026-01-05", "random_state": 20260105}


def main() -> None:
    from t1046lab.datasets import enterprise_plan, load_dataset, simulate_enterprise
    from t1046lab.datasets.registry import count_tables

    simulate_enterprise(**PARAMS, out=HERE / "connections.parquet")
    frame = load_dataset(HERE.name)
    plan = enterprise_plan(**PARAMS)
    template = (HERE / "README.template.md").read_text()
    call = "simulate_enterprise(" + ", ".join(f"{k}={v!r}" for k, v in PARAMS.items()) + ', out="data/enterprise-week/connections.parquet")'
    roles = "\n".join(f"| {role} | {n} |" for role, n in plan.network.summary().items())
    scans = _markdown(plan.scan_table().drop(columns=["day"]))
    text = template.format(
        call=call,
        rows=f"{len(frame):,}",
        first=frame["event_start"].min(),
        last=frame["event_start"].max(),
        roles=roles,
        scans=scans,
        counts=count_tables(frame),
    )
    (HERE / "README.md").write_text(text)


def _markdown(frame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
