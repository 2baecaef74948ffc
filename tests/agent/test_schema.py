import pytest

from agent.core.schema import Invalid, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5s", 1.5),
        (" 1m 30s ", 90.0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", [10, 1.5, "10", "ten", "10x", "s", "", "1m-5s", True])
def test_bad_durations_say_what_was_expected(bad):
    with pytest.raises(Invalid, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MiB", 256 * 2**20),
        ("1GB", 10**9),
        ("64k", 65536),
        ("10 MB", 10**7),
        (4096, 4096),
        ("1.5GiB", 3 * 2**29),
        ("2TiB", 2 * 2**40),
        ("512", 512),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "10XB", -1, True, 1.5, "MiB"])
def test_bad_sizes(bad):
    with pytest.raises(Invalid):
        parse_size(bad)
