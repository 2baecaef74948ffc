import pytest

from collectors.network import FIELDS, NetworkCollector, NetworkConfig
from tests.collectors.fakes import RecordedSource, by_key


def nic(rx_bytes, tx_bytes=0, rx_packets=0, rx_errors=0, rx_drops=0):
    counters = dict.fromkeys(FIELDS, 0)
    counters.update(
        receive_bytes=rx_bytes,
        transmit_bytes=tx_bytes,
        receive_packets=rx_packets,
        receive_errors=rx_errors,
        receive_drops=rx_drops,
    )
    return counters


def collect_steps(src, collector, n):
    out = []
    for i in range(n):
        out.append(by_key(collector.collect(1000.0 + 10 * i, 10.0 * i)))
        src.step()
    return out


def test_counters_and_rates_per_interface():
    src = RecordedSource(
        net_io=[{"eth0": nic(1000, 500)}, {"eth0": nic(21000, 1500, rx_packets=30)}]
    )
    first, second = collect_steps(src, NetworkCollector(src), 2)
    dev = (("device", "eth0"),)
    assert first[("network_receive_bytes_total", dev)] == 1000
    assert ("network_receive_bytes_per_second", dev) not in first
    assert second[("network_receive_bytes_per_second", dev)] == pytest.approx(2000.0)
    assert second[("network_transmit_bytes_per_second", dev)] == pytest.approx(100.0)
    assert second[("network_receive_packets_per_second", dev)] == pytest.approx(3.0)


def test_wrap_reset_and_vanishing_interface_never_give_negative_or_absurd_rates():
    src = RecordedSource(
        net_io=[
            {"eth0": nic(2**32 - 100), "eth1": nic(5000)},
            {"eth0": nic(400)},  # eth0 wrapped at 32 bits, eth1 removed
            {"eth0": nic(1400), "eth1": nic(10)},  # eth1 re-created
            {"eth0": nic(2400), "eth1": nic(110)},
        ]
    )
    steps = collect_steps(src, NetworkCollector(src), 4)
    rates = [{k: v for k, v in s.items() if k[0].endswith("_per_second")} for s in steps]
    assert ("network_receive_bytes_per_second", (("device", "eth0"),)) not in rates[1]
    assert rates[2][("network_receive_bytes_per_second", (("device", "eth0"),))] == 100.0
    assert ("network_receive_bytes_per_second", (("device", "eth1"),)) not in rates[2]
    assert rates[3][("network_receive_bytes_per_second", (("device", "eth1"),))] == 10.0
    for r in rates:
        assert all(0 <= v < 1e6 for v in r.values())
    assert ("network_receive_bytes_total", (("device", "eth1"),)) not in steps[1]


def test_loopback_and_virtual_excluded_by_default_and_configurable():
    counters = {"lo": nic(1), "eth0": nic(1), "veth12ab": nic(1), "br0": nic(1), "bond0": nic(1)}
    src = RecordedSource(net_io=[counters])
    src.kinds = {"lo": "loopback", "veth12ab": "virtual", "br0": "virtual", "bond0": "virtual"}

    def devices(config):
        records = NetworkCollector(src, config).collect(0.0, 0.0)
        return {r.labels["device"] for r in records}

    assert devices(NetworkConfig()) == {"eth0"}
    assert devices(NetworkConfig(include_loopback=True)) == {"eth0", "lo"}
    assert devices(NetworkConfig(include_virtual=True)) == {"eth0", "veth12ab", "br0", "bond0"}
    assert devices(NetworkConfig(include_devices=("^bond",))) == {"eth0", "bond0"}
    assert devices(NetworkConfig(exclude_devices=("^eth",))) == set()
