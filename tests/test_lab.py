"""The scan lab end to end: real scanners in network namespaces (Linux, root, tools installed).

CI runs as root with the tools `.ci/run` installs; elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t1046lab.datasets.lab import runner
from t1046lab.datasets.lab.groundtruth import probe_coverage, read_ground_truth
from t1046lab.datasets.lab.netns import (
    LabSafetyError,
    leftover_namespaces,
    list_namespaces,
    new_prefix,
)
from t1046lab.datasets.lab.scenarios import SMOKE

_OK, _WHY = runner.lab_available("smoke")
pytestmark = [pytest.mark.root, pytest.mark.skipif(not _OK, reason=_WHY or "scan lab unavailable")]


def _pids_in_log(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"\bstart .*? pid=(\d+)", log.read_text())]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab-smoke")
    prefix = new_prefix()
    result = runner.run_lab("smoke", out, random_state=0, prefix=prefix)
    return result, prefix


@pytest.mark.slow
def test_smoke_writes_its_outputs_and_leaves_nothing(smoke):
    result, prefix = smoke
    assert leftover_namespaces(prefix) == []
    for name in ("capture.pcap", "ground_truth.csv", "connections.parquet", "lab.log"):
        assert (result.out_dir / name).stat().st_size > 0, name
    assert not any(_alive(pid) for pid in _pids_in_log(result.log))
    gt = read_ground_truth(result.out_dir / "ground_truth.csv")
    assert list(gt["activity_id"]) == [a.id for a in SMOKE.activities]
    assert gt["start_utc"].notna().all() and (gt["end_utc"] >= gt["start_utc"]).all()
    assert set(gt["status"]) <= {"finished", "stopped"}
    assert gt.loc[gt["label"] == "scan", "status"].eq("finished").all()
    assert (gt.loc[gt["label"] == "scan", "exit_code"].isin([0, 1])).all()  # nc / bash loops end 1 on a closed last port


@pytest.mark.slow
def test_every_scan_shows_the_probes_it_was_told_to_make(smoke):
    result, _ = smoke
    conns = result.connections
    gt = result.ground_truth.set_index("activity_id")
    cov = probe_coverage(conns, result.ground_truth, SMOKE)
    assert len(cov) == sum(len(a.targets) for a in SMOKE.activities if a.expect_ports or a.expect_icmp) >= 20
    ports = cov.dropna(subset=["expected"])
    assert (ports["seen"] == ports["expected"]).all(), ports[ports["seen"] < ports["expected"]].to_string()
    sweep = cov[cov["activity_id"] == "scan-ping-sweep"]
    assert len(sweep) == 8 and (sweep["icmp_echo"] >= 1).all()
    # the vertical SYN scan: exactly its N ports from the scanner to web1, nothing else
    syn = gt.loc["scan-syn"]
    rows = conns[(conns["source_ip"] == syn["source_addresses"]) & (conns["destination_ip"] == syn["targets"])]
    assert rows["destination_port"].nunique() == 104


@pytest.mark.slow
def test_labels_cover_the_activities(smoke):
    result, _ = smoke
    conns, gt = result.connections, result.ground_truth
    assert {"label", "scan_type", "benign_category", "scenario"} <= set(conns.columns)
    assert (conns["scenario"] == "smoke").all()
    per_activity = conns["lab_activity_id"].value_counts()
    for row in gt.itertuples():
        assert per_activity.get(row.activity_id, 0) > 0, f"no connection labelled {row.activity_id}"
        labelled = conns[conns["lab_activity_id"] == row.activity_id]
        assert (labelled["label"] == row.label).all()
        if row.label == "scan":
            assert (labelled["scan_type"] == row.scan_type).all() and labelled["benign_category"].isna().all()
        else:
            assert (labelled["benign_category"] == row.benign_category).all() and labelled["scan_type"].isna().all()
        # every row from the actor inside its window got this activity
        src = row.source_addresses.split()[0]
        inside = conns[(conns["source_ip"] == src) & conns["event_start"].between(row.start_utc, row.end_utc)]
        assert (inside["lab_activity_id"] == row.activity_id).all(), row.activity_id
    assert set(conns["label"].dropna()) == {"scan", "benign"}
    # almost everything is explained by an activity
    assert (conns["benign_category"] == "unattributed").mean() < 0.02


def test_injected_failure_cleans_up(monkeypatch, tmp_path):
    prefix = new_prefix()

    def broken_timeline(lab, scen, runs, tmp):
        runner._start(lab, runs[0], tmp)  # one activity running when the step fails
        assert any(n.startswith(prefix) for n in list_namespaces())
        raise RuntimeError("injected failure")

    monkeypatch.setattr(runner, "_timeline", broken_timeline)
    with pytest.raises(RuntimeError, match="injected failure"):
        runner.run_lab("smoke", tmp_path, prefix=prefix, read_connections=False)
    assert leftover_namespaces(prefix) == []
    pids = _pids_in_log(tmp_path / "lab.log")
    assert len(pids) > 10  # services, tcpdump, the ARP responder, the activity
    assert not any(_alive(p) for p in pids)
    assert "deleted" in (tmp_path / "lab.log").read_text()


def test_preflight_refuses_existing_names_and_keeps_them(tmp_path):
    prefix = new_prefix()
    theirs = f"{prefix}web1"
    subprocess.run(["ip", "netns", "add", theirs], check=True, timeout=10)
    try:
        with pytest.raises(LabSafetyError, match="already exist"):
            runner.run_lab("smoke", tmp_path, prefix=prefix, read_connections=False)
        assert theirs in list_namespaces()  # not ours to delete
        assert leftover_namespaces(prefix) == [theirs]
    finally:
        subprocess.run(["ip", "netns", "del", theirs], timeout=10, check=False)
    assert leftover_namespaces(prefix) == []


def test_preflight_refuses_a_subnet_already_in_use(tmp_path):
    other = f"{new_prefix()}other"
    subprocess.run(["ip", "netns", "add", other], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", other, "addr", "add", "10.146.46.5/24", "dev", "lo"], check=True, timeout=10)
        prefix = new_prefix()
        with pytest.raises(LabSafetyError, match="overlaps"):
            runner.run_lab("smoke", tmp_path, prefix=prefix, subnet="10.146.46.0/24", read_connections=False)
        assert leftover_namespaces(prefix) == []
    finally:
        subprocess.run(["ip", "netns", "del", other], timeout=10, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_cleans_up(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-m", "t1046lab.cli", "lab", "run", "--scenario", "smoke", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    log = tmp_path / "lab.log"
    prefix = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            found = re.search(r"namespace prefix (t1046-[0-9a-f]+-)", text)
            prefix = found.group(1) if found else None
            if prefix and "start activity" in text:
                break
            time.sleep(0.1)
        assert prefix and leftover_namespaces(prefix), "the lab did not get going"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + signal.SIGTERM)
    assert leftover_namespaces(prefix) == []
    assert not any(_alive(p) for p in _pids_in_log(log))
