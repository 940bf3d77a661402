"""`detect` runs unchanged on the canonical frame of every telemetry format."""

from __future__ import annotations

import warnings

import pytest

import t1046lab
from t1046lab.alerts import validate_alerts
from t1046lab.detectors import list_detectors
from t1046lab.detectors.anomaly import BaselineWarning

SAMPLES = [
    "formats/zeek_conn.log",
    "formats/zeek_conn.json",
    "formats/zeek_conn_portscan_horizontal.log",
    "formats/zeek_conn_portscan_vertical.json",
    "formats/suricata_eve_flow.json",
    "formats/nfdump_csv_v1.7.txt",
    "formats/argus_ra_default.csv",
    "formats/argus_ra_Zb.csv",
    "formats/vpc_flow_v2.txt",
    "formats/vpc_flow_custom_v3_v5.txt",
    "formats/vpc_flow_v7_ecs_otel_fixture.txt",
    "formats/gcp_vpc_flow.json",
    "formats/azure_nsg_flow_v2.json",
    "formats/azure_vnet_flow.json",
    "formats/hubble_flows.json",
    "formats/calico_flows.json",
    "formats/sysmon_linux_eid3.xml",
    "formats/unsw_nb15_raw_UNSW-NB15_4.csv",
    "real/cicids2017-sample/Portscan_5000.csv",
    "real/pcap/synscan.pcapng",
]
DETECTORS = [d for d in list_detectors()["detector"] if d != "ensemble"]


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_detector_runs_on_the_format(shared, sample):
    conns = t1046lab.read(shared(sample))
    assert len(conns) > 0
    for detector in DETECTORS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BaselineWarning)  # small samples fall back to the reference baseline
            alerts = t1046lab.detect(conns, detector=detector, all_windows=True)
        validate_alerts(alerts)
        assert set(alerts["detector"]) <= {detector}
        if detector in {"port-entropy", "iforest", "role-baseline"}:
            # Window detectors score every (source, window) that has traffic.
            scored = conns.dropna(subset=["source_ip"])["source_ip"].nunique()
            assert alerts["entity"].nunique() == scored


def test_the_scanner_of_a_single_capture_is_found_with_the_reference_baseline(shared):
    conns = t1046lab.read(shared("real/pcap/synscan.pcapng"))
    for detector in ("port-entropy", "iforest", "role-baseline", "ensemble"):
        with pytest.warns(BaselineWarning, match="only 1 window"):
            alerts = t1046lab.detect(conns, detector=detector)
        assert list(alerts["entity"]) == ["172.16.0.8"], detector
        assert alerts["scan_type"].iloc[0] == "vertical"
