"""The plugin output parser, on literal output of real Monitoring Plugins
(2.3.3, as Debian 12 ships them), the examples of the plugin guidelines
and the Nagios docs, and garbage; Hypothesis for "never raises" and for
a round trip of well-formed items."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.checks.model import Perf
from collectors.checks.perfdata import UNITS, parse_plugin_output


def perf(text: str) -> tuple[Perf, ...]:
    return parse_plugin_output(text)[2]


# -- real plugins -------------------------------------------------------------------------


def test_check_tcp():
    out = (
        "TCP OK - 0.000 second response time on 127.0.0.1 port 18999"
        "|time=0.000129s;;;0.000000;10.000000\n"
    )
    assert parse_plugin_output(out) == (
        "TCP OK - 0.000 second response time on 127.0.0.1 port 18999",
        "",
        (Perf("time", 0.000129, "s", None, None, 0.0, 10.0),),
    )


def test_check_disk_in_bytes_and_the_message_keeps_its_own_equals_sign():
    out = (
        "DISK OK - free space: / 80183MiB (77% inode=97%);| "
        "/=24864882688B;267847005634;267847005634;0;270552530944\n"
    )
    message, long_text, items = parse_plugin_output(out)
    assert message == "DISK OK - free space: / 80183MiB (77% inode=97%);"
    assert long_text == ""
    assert items == (
        Perf("/", 24864882688.0, "bytes", 267847005634.0, 267847005634.0, 0.0, 270552530944.0),
    )


def test_check_ping_milliseconds_and_percent_with_a_trailing_semicolon():
    out = (
        "PING OK - Packet loss = 0%, RTA = 0.13 ms|"
        "rta=0.134000ms;100.000000;500.000000;0.000000 pl=0%;20;60;0;\n"
    )
    rta, pl = perf(out)
    assert rta == Perf("rta", pytest.approx(0.000134), "s", 0.1, 0.5, 0.0, None)
    assert pl == Perf("pl", 0.0, "percent", 20.0, 60.0, 0.0, None)


def test_check_load_items_with_trailing_semicolons_and_space():
    out = (
        "LOAD OK - total load average: 0.06, 0.30, 0.54|load1=0.060;5.000;10.000;0; "
        "load5=0.300;4.000;8.000;0; load15=0.540;3.000;6.000;0; \n"
    )
    assert perf(out) == (
        Perf("load1", 0.06, "", 5.0, 10.0, 0.0, None),
        Perf("load5", 0.3, "", 4.0, 8.0, 0.0, None),
        Perf("load15", 0.54, "", 3.0, 6.0, 0.0, None),
    )


def test_check_icmp_empty_fields():
    out = (
        "OK - 127.0.0.1: rta 0.016ms, lost 0%|rta=0.016ms;200.000;500.000;0; "
        "pl=0%;40;80;; rtmax=0.046ms;;;; rtmin=0.008ms;;;; \n"
    )
    labels = [(p.label, p.unit, p.warn) for p in perf(out)]
    assert labels == [
        ("rta", "s", pytest.approx(0.2)),
        ("pl", "percent", 40.0),
        ("rtmax", "s", None),
        ("rtmin", "s", None),
    ]


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (
            "USERS OK - 0 users currently logged in |users=0;5;10;0",
            (Perf("users", 0.0, "", 5.0, 10.0, 0.0),),
        ),
        (
            "SWAP CRITICAL - 0% free (0MB out of 0MB) - Swap is either disabled, not present,"
            " or of zero size. |swap=0B;0;0;0;0",
            (Perf("swap", 0.0, "bytes", 0.0, 0.0, 0.0, 0.0),),
        ),
        (
            "FILE_AGE CRITICAL: /etc/hostname is 17593 seconds old and 3 bytes"
            " | age=17593s;10;20 size=3B;0;0;0",
            (Perf("age", 17593.0, "s", 10.0, 20.0), Perf("size", 3.0, "bytes", 0.0, 0.0, 0.0)),
        ),
        (
            "RSS CRITICAL: 15 crit, 0 warn out of 71 processes | procs=71;;;0;"
            " procs_warn=0;;;0; procs_crit=15;;;0;",
            (
                Perf("procs", 71.0, "", min=0.0),
                Perf("procs_warn", 0.0, "", min=0.0),
                Perf("procs_crit", 15.0, "", min=0.0),
            ),
        ),
    ],
)
def test_more_real_plugins(out, expected):
    assert perf(out) == expected


def test_no_perfdata():
    assert parse_plugin_output("UNKNOWN\n") == ("UNKNOWN", "", ())
    assert parse_plugin_output("") == ("", "", ())
    assert parse_plugin_output("connect to address 127.0.0.1 and port 1: Connection refused") == (
        "connect to address 127.0.0.1 and port 1: Connection refused",
        "",
        (),
    )


# -- the plugin API: long output ----------------------------------------------------------


def test_nagios_docs_multiline_example():
    # The Nagios 3 plugin API's own example: perfdata on the first line, then
    # after the '|' of a long-output line, then every line after that.
    out = (
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%);\n"
        "/home 69357 MB (27%);\n"
        "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414 \n"
        "/var/log=818MB;970;975;0;980\n"
    )
    message, long_text, items = parse_plugin_output(out)
    assert message == "DISK OK - free space: / 3326 MB (56%);"
    assert long_text.split("\n") == [
        "/ 15272 MB (77%);",
        "/boot 68 MB (69%);",
        "/home 69357 MB (27%);",
        "/var/log 819 MB (84%);",
    ]
    assert [p.label for p in items] == ["/", "/boot", "/home", "/var/log"]
    assert items[3] == Perf("/var/log", 818e6, "bytes", 970e6, 975e6, 0.0, 980e6)


def test_long_output_without_perfdata_on_the_first_line():
    out = "OK: 3 queues\nqueue a: 1\nqueue b: 2\r\n| a=1 b=2\n'c d'=3\n"
    message, long_text, items = parse_plugin_output(out)
    assert (message, long_text) == ("OK: 3 queues", "queue a: 1\nqueue b: 2")
    assert [(p.label, p.value) for p in items] == [("a", 1.0), ("b", 2.0), ("c d", 3.0)]


def test_a_line_after_the_perfdata_started_is_perfdata_even_without_a_bar():
    out = "OK\nlong\n| a=1\nthis is not text b=2"
    message, long_text, items = parse_plugin_output(out)
    assert (message, long_text) == ("OK", "long")
    assert [p.label for p in items] == ["a", "b"]  # "this", "is", ... are not items


# -- items ---------------------------------------------------------------------------------


def test_quoted_labels_spaces_equals_and_doubled_quotes():
    out = "OK | 'rta'=12.445000ms 'pl'=0% 'C:\\ Used Space'=15.2GB;20;25;0;30 'it''s=1'=4 'x'''=5"
    assert [p.label for p in perf(out)] == ["rta", "pl", "C:\\ Used Space", "it's=1", "x'"]
    assert perf(out)[2] == Perf("C:\\ Used Space", 15.2e9, "bytes", 20e9, 25e9, 0.0, 30e9)


@pytest.mark.parametrize(
    ("item", "value", "unit"),
    [
        ("x=5", 5.0, ""),
        ("x=5s", 5.0, "s"),
        ("x=250ms", 0.25, "s"),
        ("x=1500us", 0.0015, "s"),
        ("x=99.5%", 99.5, "percent"),
        ("x=512B", 512.0, "bytes"),
        ("x=2KB", 2000.0, "bytes"),  # powers of 1000: see UNITS
        ("x=2kB", 2000.0, "bytes"),
        ("x=3MB", 3e6, "bytes"),
        ("x=4GB", 4e9, "bytes"),
        ("x=1.5TB", 1.5e12, "bytes"),
        ("x=2KiB", 2048.0, "bytes"),
        ("x=1MiB", 1048576.0, "bytes"),
        ("x=1GiB", 1024.0**3, "bytes"),
        ("x=1TiB", 1024.0**4, "bytes"),
        ("x=123456c", 123456.0, "counter"),
        ("x=-3.5", -3.5, ""),
        ("x=+2", 2.0, ""),
        ("x=.5", 0.5, ""),
        ("x=5.", 5.0, ""),
        ("x=1.5e3ms", 1.5, "s"),
        ("x=2E-3s", 0.002, "s"),
    ],
)
def test_units_convert_to_base_units(item, value, unit):
    (p,) = perf(f"OK | {item}")
    assert (p.value, p.unit) == (pytest.approx(value), unit)


def test_thresholds_min_and_max_take_the_value_unit():
    (p,) = perf("OK | t=200ms;500;1000;0;2500")
    assert (p.value, p.warn, p.crit, p.min, p.max) == pytest.approx((0.2, 0.5, 1.0, 0.0, 2.5))
    (p,) = perf("OK | m=1MB;2;3;0;4")
    assert (p.value, p.warn, p.crit, p.min, p.max) == (1e6, 2e6, 3e6, 0.0, 4e6)


@pytest.mark.parametrize(
    ("threshold", "upper"),
    [
        ("10", 10.0),  # 0..10: alerts above 10
        ("0:10", 10.0),
        ("5:10", 10.0),
        (":10", 10.0),  # start omitted: 0
        ("~:10", 10.0),  # no lower end
        ("10.5", 10.5),
        ("-10:-5", -5.0),
        ("10:", None),  # alerts below 10: no upper end
        ("~:", None),
        ("@10", None),  # alerts inside: not an upper threshold
        ("@10:20", None),
        ("@~:20", None),
        ("20:10", None),  # start above end: invalid
        ("-5", None),  # 0:-5, invalid
        ("", None),
        ("U", None),
        ("10%", None),  # thresholds carry no unit
        ("1:2:3", None),
        ("a:10", None),
        ("~10", None),
    ],
)
def test_threshold_ranges(threshold, upper):
    (p,) = perf(f"OK | x=1;{threshold};{threshold}")
    assert (p.warn, p.crit) == (upper, upper)


def test_undetermined_values():
    # "U" as the value: the item is skipped; as min or max: no bound.
    assert perf("OK | a=U b=U;1;2 'c d'=Us e=3;U;U;U;U f=4") == (
        Perf("e", 3.0),
        Perf("f", 4.0),
    )


@pytest.mark.parametrize(
    "garbage",
    [
        "just words here",
        "a",
        "=5",
        "''=5",
        "' '=5",
        "a=",
        "a=;1;2",
        "a=abc",
        "a=5XB",  # not a UOM
        "a=0,5s",  # a comma decimal (a non-C locale)
        "a=1.2.3",
        "a=nan",
        "a=inf",
        "a=1_000",
        "a=1e999",  # overflows to inf
        "'unterminated=5",
        "'a'b'=5",
        "'a'5",
        "a==5",
        "|",
        ";;;;",
    ],
)
def test_malformed_items_are_skipped_and_do_not_cost_their_neighbours(garbage):
    assert perf(f"OK | before=1 {garbage} after=2") == (Perf("before", 1.0), Perf("after", 2.0))


def test_unreadable_thresholds_and_bounds_drop_alone():
    (p,) = perf("OK | a=5;x;y;z;1e999")
    assert p == Perf("a", 5.0)
    # more fields than five: the first five are read
    (p,) = perf("OK | a=5;1;2;3;4;6;7")
    assert p == Perf("a", 5.0, "", 1.0, 2.0, 3.0, 4.0)


def test_several_bars_and_whitespace():
    message, _, items = parse_plugin_output("  OK: fine  |\ta=1\t\tb=2 | c=3  ")
    assert message == "OK: fine"
    assert [p.label for p in items] == ["a", "b", "c"]


# -- properties ----------------------------------------------------------------------------


@given(st.text())
def test_never_raises_on_arbitrary_text(text):
    message, long_text, items = parse_plugin_output(text)
    assert isinstance(message, str) and isinstance(long_text, str)
    assert "\n" not in message
    for p in items:
        assert p.label.strip() and math.isfinite(p.value)
        assert p.unit in {"", "s", "bytes", "percent", "counter"}


# Text made of the characters perfdata is made of reaches deeper than st.text().
perfish = st.text(alphabet=" \t\n|'=;:@~-+.eEU%sBKMGTiumc0123456789ab", max_size=200)


@given(perfish)
def test_never_raises_on_perfdata_like_text(text):
    for p in parse_plugin_output(text)[2]:
        assert math.isfinite(p.value)
        for bound in (p.warn, p.crit, p.min, p.max):
            assert bound is None or math.isfinite(bound)


labels = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1
).filter(lambda s: s.strip())
numbers = st.floats(allow_nan=False, allow_infinity=False)
base_units = st.sampled_from([uom for uom, (mul, div, _) in UNITS.items() if mul == div == 1])


@given(st.lists(st.tuples(labels, numbers, base_units, numbers, numbers), min_size=1, max_size=5))
def test_round_trip_of_well_formed_items(items):
    text = " ".join(
        "'{}'={!r}{};~:{!r};;{!r}".format(label.replace("'", "''"), value, uom, hi, lo)
        for label, value, uom, hi, lo in items
    )
    parsed = perf(f"OK | {text}")
    assert [(p.label, p.value, p.unit, p.warn, p.min) for p in parsed] == [
        (label, value, UNITS[uom][2], hi, lo) for label, value, uom, hi, lo in items
    ]
