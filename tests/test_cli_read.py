"""`t1046lab read` and `t1046lab formats` on the bundled capture."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from t1046lab.cli import main

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "synthetic-capture" / "synthetic-capture.pcap"


def test_read_writes_the_canonical_frame_and_its_quarantine(tmp_path, capsys):
    out, bad = tmp_path / "conns.parquet", tmp_path / "quarantine.csv"
    assert main(["read", str(CAPTURE), "-o", str(out), "--quarantine", str(bad)]) == 0
    printed = capsys.readouterr().out
    frame = pd.read_parquet(out)
    assert f"-> {len(frame):,} rows" in printed and f"wrote {len(frame):,} rows" in printed
    assert set(frame["conn_outcome"]) >= {"established", "rejected", "no_reply"}
    assert list(pd.read_csv(bad).columns) == ["reason", "line", "offset", "excerpt"]


def test_reader_options_pass_through_and_unknown_ones_fail_cleanly(tmp_path, capsys):
    assert main(["read", str(CAPTURE), "--option", "attempt_timeout=0.001"]) == 0
    short = capsys.readouterr().out
    assert main(["read", str(CAPTURE)]) == 0
    default = capsys.readouterr().out
    assert short.splitlines()[0] != default.splitlines()[0]  # retries no longer merge into one attempt
    assert main(["read", str(CAPTURE), "--option", "bogus=1"]) == 2
    assert "unknown option(s) for the pcap reader: ['bogus']" in capsys.readouterr().err


def test_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.log"
    assert main(["read", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a telemetry format")
    assert main(["read", str(junk)]) == 2
    assert "could not recognise the format" in capsys.readouterr().err


def test_formats_lists_every_reader(capsys):
    assert main(["formats"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    names = {row.split()[0] for row in rows if row.strip()}
    assert names == {"zeek", "zeek-json", "pcap", "suricata", "nfdump", "argus", "vpc", "gcp", "azure-nsg", "azure-vnet",
                     "hubble", "calico", "osquery", "sysmon-linux", "auditd", "cic", "unsw", "cidds", "canonical"}
