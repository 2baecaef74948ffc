"""The rules that ship with the agent, on unless `[alerting] default_rules =
false` (or a name is in `[alerting] disable`). A rule of the same name in
the config replaces one. Listed with their reasons in docs/alerts.md."""

from __future__ import annotations

from agent.alerts.config import AlertRuleConfig

M = 60.0
H = 3600.0


def _rule(
    name: str, expr: str, for_: float, severity: str, summary: str, clear: str = ""
) -> AlertRuleConfig:
    return AlertRuleConfig(
        name=name,
        expr=expr,
        for_=for_,
        clear=clear,
        severity=severity,  # type: ignore[arg-type]
        summary=summary,
    )


DEFAULT_ALERTS: tuple[AlertRuleConfig, ...] = (
    _rule(
        "HighCPUUsage",
        'avg_over_time(cpu_usage_percent{cpu="all"}[5m]) > 90',
        10 * M,
        "high",
        "CPU at {value:.0f}% on {host}",
        clear="< 80",
    ),
    _rule(
        "HighMemoryUsage",
        "memory_used_percent > 90",
        5 * M,
        "high",
        "memory {value:.0f}% used on {host}",
        clear="< 85",
    ),
    _rule(
        "SwapHeavilyUsed",
        "swap_used_percent > 80",
        10 * M,
        "medium",
        "swap {value:.0f}% used on {host}",
        clear="< 70",
    ),
    _rule(
        "DiskSpaceLow",
        "disk_used_percent > 90",
        5 * M,
        "high",
        "{mount} is {value:.1f}% full on {host}",
        clear="< 88",
    ),
    _rule(
        "DiskSpaceCritical",
        "disk_used_percent > 97",
        1 * M,
        "critical",
        "{mount} is {value:.1f}% full on {host}",
        clear="< 95",
    ),
    _rule(
        "DiskInodesLow",
        "disk_inodes_used_percent > 90",
        5 * M,
        "high",
        "{mount} has used {value:.0f}% of its inodes on {host}",
        clear="< 88",
    ),
    _rule(
        "DiskWillFillIn24h",
        "predict_linear(disk_free_bytes[1h], 86400) < 0",
        30 * M,
        "medium",
        "{mount} on {host} fills within 24 h at the last hour's rate",
    ),
    _rule(
        "HighLoadPerCore",
        'load_average_per_cpu{period="5m"} > 2',
        15 * M,
        "medium",
        "load {value:.1f} per CPU on {host}",
        clear="< 1.5",
    ),
    _rule(
        "NetworkReceiveErrors",
        "increase(network_receive_errors_total[10m]) > 10",
        0.0,
        "medium",
        "{device} on {host}: {value:.0f} receive errors in 10 min",
    ),
    _rule(
        "NetworkTransmitErrors",
        "increase(network_transmit_errors_total[10m]) > 10",
        0.0,
        "medium",
        "{device} on {host}: {value:.0f} transmit errors in 10 min",
    ),
    _rule(
        "LogErrorRate",
        "increase(log_matches_total[5m]) > 100",
        0.0,
        "medium",
        "{rule} matched {value:.0f} lines of {file} in 5 min on {host}",
    ),
    _rule(
        "BufferDroppingRecords",
        "increase(vigil_buffer_dropped_records_total[15m]) > 0",
        0.0,
        "high",
        "the disk buffer on {host} dropped {value:.0f} records in 15 min",
    ),
    _rule(
        "HubUnreachable",
        "vigil_shipper_lag_seconds > 900",
        5 * M,
        "high",
        "{host} has not delivered to the hub for {value:.0f} s",
        clear="< 60",
    ),
    _rule(
        "CertificateExpiringSoon",
        "check_certificate_expiry_seconds < 1209600",  # 14 days
        0.0,
        "medium",
        "the certificate of {check} expires in {duration}",
    ),
    _rule(
        "CertificateExpiryCritical",
        "check_certificate_expiry_seconds < 259200",  # 3 days
        0.0,
        "critical",
        "the certificate of {check} expires in {duration}",
    ),
    # Access logs ([[logs]] format = "nginx_combined"...): no series, no alert,
    # until one is configured
    _rule(
        "HTTPLatencyHigh",
        'http_request_duration_seconds{quantile="0.95"} > 0.5',
        5 * M,
        "medium",
        "p95 latency of {file} is {value:.2f} s on {host}",
        clear="< 0.4",
    ),
    _rule(  # the 5xx share per file and vhost: query.py reads this subset ratio
        "HTTPErrorRatioHigh",
        'rate(http_requests_total{status_class="5xx"}[5m]) / rate(http_requests_total[5m]) > 0.05',
        5 * M,
        "high",
        "{value:.1%} of the requests in {file} were answered 5xx on {host}",
        clear="< 0.04",
    ),
    _rule(  # [[processes]] groups: none configured, nothing to look at
        "ProcessDown",
        "process_group_up == 0",
        10.0,
        "high",
        "no process of {group} runs on {host}",
    ),
    _rule(
        "CheckFailing",
        "check_up == 0",
        2 * M,
        "high",
        "check {check} is failing on {host}",
    ),
)
