"""Benchmark: the pcap reader (packets -> connection attempts) against tshark and argus.

Run from the repository root::

    python benchmarks/bench_pcap.py [--packets 1000000] [--random-state 0] [--no-write]

It generates a classic pcap of at least ``--packets`` packets in a temporary directory (a mix
of TCP sessions, SYN-scan probes with RST / SYN-ACK / no answer, DNS exchanges and unanswered
UDP), then times in one run:

* ours: ``t1046lab.read(path, format="pcap")`` in a fresh Python process, after a warm-up
  read of the bundled synthetic capture (imports excluded), with its peak resident memory;
* tshark extracting the same per-packet fields (``-T fields``);
* argus building flows (``argus -r FILE -w - | ra -r - -c , -s ...``).

and writes the ``pcap-reader`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine_line, write_section

FRAME = 54  # Ethernet + IPv4 + TCP without options; UDP frames carry 12 payload bytes to match


def synthetic_packets(n_packets: int, random_state: int = 0) -> dict[str, np.ndarray]:
    """Per-packet fields of a mixed workload of about ``n_packets`` packets, time-ordered."""
    rng = np.random.default_rng(random_state)
    parts = []
    t_span = 3600 * 10**9
    # TCP sessions: SYN, SYN-ACK, ACK, PSH-ACK, FIN-ACK from the client (5 packets)
    n_sess = int(n_packets * 0.40) // 5
    c = 0x0A000000 + rng.integers(1, 60000, n_sess)
    s = 0xC0A80000 + rng.integers(1, 200, n_sess)
    sp = rng.integers(32768, 61000, n_sess)
    dp = rng.choice([22, 80, 443, 8080], n_sess)
    t0 = np.sort(rng.integers(0, t_span, n_sess))
    steps = [(0, 0x02, 0), (1, 0x12, 1), (0, 0x10, 2), (0, 0x18, 3), (0, 0x11, 4)]
    for rev, flags, k in steps:
        parts.append(_pk(t0 + k * 2_000_000, np.where(rev, s, c), np.where(rev, c, s), np.where(rev, dp, sp),
                         np.where(rev, sp, dp), 6, flags))
    # SYN-scan probes from 5 scanners: 2% SYN-ACK, 10% RST, the rest unanswered
    n_probe = int(n_packets * 0.30 / 1.12)
    scanner = 0x0A630000 + rng.integers(1, 6, n_probe)
    target = 0xC0A80000 + rng.integers(1, 255, n_probe)
    port = rng.integers(1, 65536, n_probe)
    tp = np.sort(rng.integers(0, t_span, n_probe))
    parts.append(_pk(tp, scanner, target, np.full(n_probe, 45000), port, 6, 0x02))
    answer = rng.random(n_probe)
    syn_ack = answer < 0.02
    rst = (answer >= 0.02) & (answer < 0.12)
    for sel, flags in ((syn_ack, 0x12), (rst, 0x14)):
        parts.append(_pk(tp[sel] + 300_000, target[sel], scanner[sel], port[sel], np.full(sel.sum(), 45000), 6, flags))
    # DNS: query and answer
    n_dns = int(n_packets * 0.20) // 2
    cl = 0x0A000000 + rng.integers(1, 60000, n_dns)
    td = np.sort(rng.integers(0, t_span, n_dns))
    qp = rng.integers(1024, 65536, n_dns)
    parts.append(_pk(td, cl, np.full(n_dns, 0xC0A80035), qp, np.full(n_dns, 53), 17, 0))
    parts.append(_pk(td + 1_000_000, np.full(n_dns, 0xC0A80035), cl, np.full(n_dns, 53), qp, 17, 0))
    # unanswered UDP
    n_udp = max(n_packets - sum(len(p["ts"]) for p in parts), 0)
    parts.append(_pk(np.sort(rng.integers(0, t_span, n_udp)), 0x0A000000 + rng.integers(1, 60000, n_udp),
                     0xC0A80000 + rng.integers(1, 255, n_udp), rng.integers(1024, 65536, n_udp),
                     rng.integers(1, 65536, n_udp), 17, 0))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out["ts"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def _pk(ts, src, dst, sport, dport, proto, flags) -> dict[str, np.ndarray]:
    n = len(ts)
    return {
        "ts": np.asarray(ts, dtype=np.int64) + 1_700_000_000 * 10**9,
        "src": np.asarray(src, dtype=np.uint32),
        "dst": np.asarray(dst, dtype=np.uint32),
        "sport": np.asarray(sport, dtype=np.uint16),
        "dport": np.asarray(dport, dtype=np.uint16),
        "proto": np.full(n, proto, dtype=np.uint8),
        "flags": np.full(n, flags, dtype=np.uint8),
    }


def write_capture(path: Path, fields: dict[str, np.ndarray]) -> int:
    """Write the packets as a classic little-endian microsecond pcap, built with numpy; return the count."""
    n = len(fields["ts"])
    rec = np.zeros((n, 16 + FRAME), dtype=np.uint8)

    def put(col: int, values: np.ndarray, dtype: str) -> None:
        width = np.dtype(dtype).itemsize
        rec[:, col : col + width] = np.asarray(values).astype(dtype).view(np.uint8).reshape(n, width)

    put(0, fields["ts"] // 10**9, "<u4")
    put(4, (fields["ts"] % 10**9) // 1000, "<u4")
    put(8, np.full(n, FRAME), "<u4")
    put(12, np.full(n, FRAME), "<u4")
    e = 16
    rec[:, e : e + 6] = [2, 0, 0, 0, 0, 2]
    rec[:, e + 6 : e + 12] = [2, 0, 0, 0, 0, 1]
    put(e + 12, np.full(n, 0x0800), ">u2")
    ip = e + 14
    rec[:, ip] = 0x45
    put(ip + 2, np.full(n, 40), ">u2")
    rec[:, ip + 8] = 64
    rec[:, ip + 9] = fields["proto"]
    put(ip + 12, fields["src"], ">u4")
    put(ip + 16, fields["dst"], ">u4")
    l4 = ip + 20
    put(l4, fields["sport"], ">u2")
    put(l4 + 2, fields["dport"], ">u2")
    tcp = fields["proto"] == 6
    rec[tcp, l4 + 12] = 0x50
    rec[tcp, l4 + 13] = fields["flags"][tcp]
    rec[:, l4 + 14] = np.where(tcp, 0x04, rec[:, l4 + 14])
    udp = ~tcp
    rec[udp, l4 + 4 : l4 + 6] = np.frombuffer(np.uint16(20).astype(">u2").tobytes(), dtype=np.uint8)
    with open(path, "wb") as fh:
        from t1046lab.io.pcap_writer import pcap_bytes

        fh.write(pcap_bytes([]))  # the file header
        fh.write(rec.tobytes())
    return n


_OURS = r"""
import json, resource, sys, time
import t1046lab
# warm up: imports and first-call set-up outside the timing (steady-state throughput)
t1046lab.read(sys.argv[2], format="pcap")
runs = []
for _ in range(3):  # best of 3, as for the window-features benchmark
    t, c = time.perf_counter(), time.process_time()
    df = t1046lab.read(sys.argv[1], format="pcap")
    runs.append((time.perf_counter() - t, time.process_time() - c))
    first = runs[0]
dt, cpu = min(runs)
rep = df.attrs["read_report"]
print(json.dumps({"seconds": dt, "cpu": cpu, "first_seconds": first[0], "rows": len(df), "packets": rep["records_seen"],
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "outcomes": df["conn_outcome"].value_counts().to_dict()}))
"""


def _time(cmd: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system of the child processes) of a shell pipeline."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    ap.add_argument("--skip-tools", action="store_true", help="time only our reader")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcap"
        n = write_capture(path, synthetic_packets(args.packets, args.random_state))
        size_mb = path.stat().st_size / 1e6
        _time(f"cat {path} > /dev/null")  # warm the page cache for every tool alike
        warm = ROOT / "data" / "synthetic-capture" / "synthetic-capture.pcap"
        ours = json.loads(subprocess.run([sys.executable, "-c", _OURS, str(path), str(warm)], capture_output=True,
                                         text=True, check=True, cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout)
        rows = [("t1046lab pcap reader (packets → connection attempts)", ours["seconds"], ours["cpu"],
                 f"{ours['rows']:,} attempts")]
        if not args.skip_tools and shutil.which("tshark"):
            sec, cpu = _time(
                f"tshark -n -r {path} -T fields -e frame.time_epoch -e ip.src -e ip.dst -e tcp.srcport "
                f"-e tcp.dstport -e udp.srcport -e udp.dstport -e tcp.flags -e ip.len > {tmp}/tshark.tsv"
            )
            rows.append(("tshark -T fields (per-packet fields, no assembly)", sec, cpu, f"{n:,} lines"))
        if not args.skip_tools and shutil.which("argus") and shutil.which("ra"):
            sec, cpu = _time(
                f"argus -r {path} -w - | ra -r - -n -c , -s stime dur saddr sport daddr dport proto state "
                f"spkts dpkts sbytes dbytes > {tmp}/argus.csv"
            )
            with open(f"{tmp}/argus.csv") as fh:
                flows = sum(1 for _ in fh) - 1  # less the header line
            rows.append(("argus + ra (flows)", sec, cpu, f"{flows:,} flow records"))
    ours_s, ours_cpu = ours["seconds"], ours["cpu"]
    lines = [
        (
            f"`python benchmarks/bench_pcap.py --packets {args.packets} --random-state {args.random_state}`: a "
            f"generated classic pcap of {n:,} packets ({size_mb:.0f} MB; TCP sessions, SYN-scan probes, DNS, "
            "unanswered UDP), page cache warm, our reader best of 3 runs in one process (its first, cold run is given below the table), each other tool run once. Wall-clock seconds, and CPU seconds "
            "(user + system; for pipelines, of every process in them) which are less sensitive to other load on "
            "the machine."
        ),
        "",
        f"Load average when the run started: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| tool | wall s | CPU s | packets/s (wall) | wall s per 100k packets | wall × ours | CPU × ours | output |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, sec, cpu, what in rows:
        lines.append(
            f"| {name} | {sec:.2f} | {cpu:.2f} | {n / sec:,.0f} | {sec / n * 1e5:.3f} | {sec / ours_s:.1f} "
            f"| {cpu / ours_cpu:.1f} | {what} |"
        )
    lines += [
        "",
        f"Our reader's first (cold) run took {ours['first_seconds']:.2f} s; the difference is mostly page faults of freshly allocated memory.",
        f"Our reader's peak resident memory (whole process, including Python and pandas): {ours['maxrss_mib']:.0f} MiB.",
        f"Outcomes: {', '.join(f'{k} {v:,}' for k, v in ours['outcomes'].items() if v)}.",
        "",
        machine_line(),
    ]
    text = "\n".join(lines)
    if args.no_write:
        print(text)
    else:
        write_section("pcap-reader", "### pcap reader\n\n" + text)
        print(text)


if __name__ == "__main__":
    main()
