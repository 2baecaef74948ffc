"""Network traffic per interface: counters and per-second rates."""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.records import Metric, Record
from agent.core.schema import check_regex, opt
from collectors.base import Collector, any_of, counter, gauge, host_collector
from collectors.rates import RateTracker
from collectors.source import HostSource

# source field -> (counter name, rate name); rates are per second over the last interval.
FIELDS = {
    f"{direction}_{what}": (
        f"network_{direction}_{what}_total",
        f"network_{direction}_{what}_per_second",
    )
    for direction in ("receive", "transmit")
    for what in ("bytes", "packets", "errors", "drops")
}


@dataclass(frozen=True)
class NetworkConfig:
    include_loopback: bool = False
    # veth pairs, bridges, tun/tap, docker0: anything under /sys/devices/virtual/net.
    include_virtual: bool = False
    include_devices: tuple[str, ...] = opt((), each=check_regex)  # always kept, e.g. "^bond0$"
    exclude_devices: tuple[str, ...] = opt((), each=check_regex)


@host_collector
class NetworkCollector(Collector):
    name = "network"
    Options = NetworkConfig
    blocking = False  # procfs reads: kernel memory, no storage to wait on
    specs = (
        counter("network_receive_bytes_total", "Bytes received."),
        counter("network_transmit_bytes_total", "Bytes transmitted."),
        counter("network_receive_packets_total", "Packets received."),
        counter("network_transmit_packets_total", "Packets transmitted."),
        counter("network_receive_errors_total", "Receive errors."),
        counter("network_transmit_errors_total", "Transmit errors."),
        counter("network_receive_drops_total", "Received packets dropped."),
        counter("network_transmit_drops_total", "Outgoing packets dropped."),
        gauge("network_receive_bytes_per_second", "Bytes received per second."),
        gauge("network_transmit_bytes_per_second", "Bytes transmitted per second."),
        gauge("network_receive_packets_per_second", "Packets received per second."),
        gauge("network_transmit_packets_per_second", "Packets transmitted per second."),
        gauge("network_receive_errors_per_second", "Receive errors per second."),
        gauge("network_transmit_errors_per_second", "Transmit errors per second."),
        gauge("network_receive_drops_per_second", "Received packets dropped per second."),
        gauge("network_transmit_drops_per_second", "Outgoing packets dropped per second."),
    )

    def __init__(self, source: HostSource, config: NetworkConfig | None = None) -> None:
        self.source = source
        self.config = config or NetworkConfig()
        self._include = any_of(self.config.include_devices)
        self._exclude = any_of(self.config.exclude_devices)
        self._rates = RateTracker()

    def wanted(self, name: str) -> bool:
        if self._include is not None and self._include.search(name):
            return True
        if self._exclude is not None and self._exclude.search(name):
            return False
        kind = self.source.interface_kind(name)
        if kind == "loopback":
            return self.config.include_loopback
        return kind != "virtual" or self.config.include_virtual

    def collect(self, ts: float, mono: float) -> list[Record]:
        nics = {n: c for n, c in self.source.net_io().items() if self.wanted(n)}
        rates = self._rates.step(mono, {(n, f): c[f] for n, c in nics.items() for f in FIELDS})
        out: list[Record] = []
        for nic, values in nics.items():
            labels = {"device": nic}
            for field, (total_name, rate_name) in FIELDS.items():
                out.append(Metric(total_name, values[field], ts, labels, "counter"))
                rate = rates.get((nic, field))
                if rate is not None:
                    out.append(Metric(rate_name, rate, ts, labels))
        return out
