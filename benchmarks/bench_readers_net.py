"""Throughput and peak memory of the network/IDS and IaaS flow-log readers.

Writes the ``net-readers`` section of docs/benchmarks.md. Each format gets a synthetic input
built here (a scan-like mix of answered, refused and unanswered probes, in the format's own
syntax), read once in a fresh subprocess so that peak RSS is the reader's own.

    python benchmarks/bench_readers_net.py [--records 200000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section

_SNIPPET = """
import json, sys, time, warnings
import t1046lab.io as tio
warnings.simplefilter("ignore")
def hwm():  # peak RSS of this process (ru_maxrss would carry the parent's over exec)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
t, w = time.process_time(), time.perf_counter()
df = tio.read(sys.argv[1], format=sys.argv[2])
cpu, wall = time.process_time() - t, time.perf_counter() - w
r = df.attrs["read_report"]
print(json.dumps({"records": r.records_seen, "rows": len(df), "cpu": cpu, "wall": wall,
                  "rss_mb": hwm(), "balanced": r.balanced}))
"""


def _ips(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    return [f"{prefix}.{a}.{b}" for a, b in zip(rng.integers(0, 256, n), rng.integers(1, 255, n))]


def make_inputs(out: Path, n: int, seed: int = 0) -> dict[str, Path]:
    """One synthetic file per format with about ``n`` records each."""
    rng = np.random.default_rng(seed)
    files: dict[str, Path] = {}
    k = n // 2  # attempts; most formats spend two records on an answered attempt
    src = _ips(rng, k, "10.1")
    dst = _ips(rng, k, "10.2")
    sport = rng.integers(32768, 61000, k)
    dport = rng.choice([22, 80, 443, 3389, 8080, 5432], k)
    kind = rng.choice(["open", "closed", "silent"], k, p=[0.3, 0.4, 0.3])
    t0 = 1_700_000_000 + np.sort(rng.integers(0, 3600, k))

    lines = []
    for i in range(n):
        j = i % k
        tc = {"open": "12", "closed": "14", "silent": "00"}[kind[j]]
        lines.append(json.dumps({
            "timestamp": "2023-11-14T22:13:20.000000+0000", "flow_id": i, "event_type": "flow",
            "src_ip": src[j], "src_port": int(sport[j]), "dest_ip": dst[j], "dest_port": int(dport[j]), "proto": "TCP",
            "flow": {"pkts_toserver": 1, "pkts_toclient": int(tc != "00"), "bytes_toserver": 60, "bytes_toclient": 60 * int(tc != "00"),
                     "start": "2023-11-14T22:13:20.000000+0000", "end": "2023-11-14T22:13:20.100000+0000", "age": 0,
                     "state": "closed", "reason": "timeout", "alerted": False},
            "tcp": {"tcp_flags": "16", "tcp_flags_ts": "02", "tcp_flags_tc": tc, "state": "closed"},
        }))
    files["suricata"] = out / "eve.json"
    files["suricata"].write_text("\n".join(lines) + "\n")

    def stamp(t: int) -> str:
        return np.datetime_as_string(np.datetime64(int(t), "s")).replace("T", " ")

    rows = ["ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt"]
    vpc = ["version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action tcp-flags log-status"]
    argus = ["StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,SrcPkts"]
    tuples = []
    for j in range(k):
        ts = stamp(t0[j])
        rows.append(f"{ts},{ts},0.000,{src[j]},{dst[j]},{sport[j]},{dport[j]},TCP,......S.,0,0,1,60,0,0")
        vpc.append(f"2 123456789012 eni-0a1b2c3d {src[j]} {dst[j]} {sport[j]} {dport[j]} 6 1 60 {t0[j]} {t0[j] + 60} ACCEPT 2 OK")
        state = {"open": "S_SA", "closed": "S_RA", "silent": "S_"}[kind[j]]
        at = np.datetime_as_string(np.datetime64(int(t0[j]) * 1_000_000, "us")).replace("T", " ").replace("-", "/")
        argus.append(f"{at},0.001,tcp,{src[j]},{sport[j]},   ->,{dst[j]},{dport[j]},{state},0,0,2,120,60,1")
        if kind[j] != "silent":
            flg = "...A..S." if kind[j] == "open" else "...A.R.."
            rows.append(f"{ts},{ts},0.000,{dst[j]},{src[j]},{dport[j]},{sport[j]},TCP,{flg},0,0,1,60,0,0")
            vpc.append(f"2 123456789012 eni-0a1b2c3d {dst[j]} {src[j]} {dport[j]} {sport[j]} 6 1 60 {t0[j]} {t0[j] + 60} ACCEPT "
                       f"{18 if kind[j] == 'open' else 4} OK")
            tuples.append(f"{t0[j]},{src[j]},{dst[j]},{sport[j]},{dport[j]},6,O,B,NX,0,0,0,0")
            tuples.append(f"{t0[j] + 1},{src[j]},{dst[j]},{sport[j]},{dport[j]},6,O,E,NX,1,60,1,60")
        else:
            tuples.append(f"{t0[j]},{dst[j]},{src[j]},{dport[j]},{sport[j]},6,I,D,NX,0,0,0,0")
    files["nfdump"] = out / "nfdump.csv"
    files["nfdump"].write_text("\n".join(rows) + "\n")
    files["vpc"] = out / "vpc.log"
    files["vpc"].write_text("\n".join(vpc) + "\n")
    files["argus"] = out / "ra.csv"
    files["argus"].write_text("\n".join(argus[: n + 1]) + "\n")
    vnet = {"records": [{"time": "2023-11-14T22:13:20Z", "flowLogVersion": 4, "macAddress": "00224871C205",
                         "category": "FlowLogFlowEvent",
                         "targetResourceID": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg",
                         "flowRecords": {"flows": [{"aclID": "a", "flowGroups": [{"rule": "r", "flowTuples": tuples}]}]}}]}
    files["azure-vnet"] = out / "PT1H.json"
    files["azure-vnet"].write_text(json.dumps(vnet))
    gcp = []
    for j in range(k):
        for a, b, p, q in ((src[j], dst[j], sport[j], dport[j]), (dst[j], src[j], dport[j], sport[j]))[: 1 + (kind[j] != "silent")]:
            gcp.append(json.dumps({"logName": "projects/p/logs/compute.googleapis.com%2Fvpc_flows", "jsonPayload": {
                "connection": {"src_ip": a, "dest_ip": b, "src_port": int(p), "dest_port": int(q), "protocol": 6},
                "start_time": f"{np.datetime_as_string(np.datetime64(int(t0[j]), 's'))}Z",
                "end_time": f"{np.datetime_as_string(np.datetime64(int(t0[j]), 's'))}Z",
                "bytes_sent": "60", "packets_sent": "1", "reporter": "SRC",
                "src_instance": {"project_id": "p", "vm_name": "vm", "zone": "z"}}}))
    files["gcp"] = out / "gcp.json"
    files["gcp"].write_text("\n".join(gcp) + "\n")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    table = ["| format | records | rows | records / CPU-second | wall s | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, path in make_inputs(Path(tmp), args.records).items():
            res = subprocess.run([sys.executable, "-c", _SNIPPET, str(path), fmt], capture_output=True, text=True, check=True)
            m = json.loads(res.stdout.strip().splitlines()[-1])
            assert m["balanced"], fmt
            table.append(
                f"| {fmt} | {m['records']:,} | {m['rows']:,} | {m['records'] / m['cpu']:,.0f} | {m['wall']:.1f} | {m['rss_mb']:,.0f} |"
            )
    text = "\n".join(
        [
            "### Network/IDS and IaaS flow-log readers",
            "",
            f"`python benchmarks/bench_readers_net.py --records {args.records}`: synthetic scan-like inputs "
            "(30% open, 40% closed, 30% silent ports), one fresh process per format; CPU time excludes "
            "waiting for the shared machine. " + machine_line(),
            "",
            *table,
        ]
    )
    print(text)
    if not args.no_write:
        write_section("net-readers", text)


if __name__ == "__main__":
    main()
