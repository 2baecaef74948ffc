"""The multi-pattern matcher (collectors/logs/matcher.py): one behavioural
suite run on both engines, held to the definition of a match, which is
Python `re` searching each line on its own."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.logs import matcher as matcher_module
from collectors.logs.matcher import ENGINES, Matcher, available_engines, build_matcher

HAVE_HYPERSCAN = "hyperscan" in available_engines()
needs_hyperscan = pytest.mark.skipif(
    not HAVE_HYPERSCAN, reason="the hyperscan package is not installed here"
)
LOGHUB = Path(__file__).parents[2] / "fixtures" / "loghub"  # copies of ../shared/data/loghub

Hits = list[tuple[int, int, frozenset[int]]]


def reference(patterns: Sequence[str], chunk: bytes) -> Hits:
    """The definition: each line, without its newline, searched by each pattern."""
    regexes = [re.compile(p.encode()) for p in patterns]
    out: Hits = []
    start = 0
    for line in chunk.split(b"\n")[:-1]:
        ids = frozenset(i for i, r in enumerate(regexes) if r.search(line))
        if ids:
            out.append((start, start + len(line), ids))
        start += len(line) + 1
    return out


def lines(*text: str) -> bytes:
    return "".join(t + "\n" for t in text).encode()


@pytest.fixture(
    params=[pytest.param("hyperscan", marks=needs_hyperscan), "re"],
)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def scan(engine: str, patterns: Sequence[str], chunk: bytes) -> Hits:
    m = build_matcher(patterns, engine)
    assert m.engine == engine
    got = m.scan(chunk)
    assert got == reference(patterns, chunk)  # every test also checks the definition
    return got


def matched_lines(chunk: bytes, hits: Hits) -> list[bytes]:
    return [chunk[start:end] for start, end, _ in hits]


# -- the definition, on literal inputs --------------------------------------------------


def test_reports_offsets_of_the_line_without_its_newline_and_the_pattern_ids(engine: str):
    chunk = lines("GET / 200", "db: ERROR timeout", "ok", "FATAL and ERROR")
    hits = scan(engine, ["ERROR", "FATAL", "timeout"], chunk)
    assert hits == [(10, 27, frozenset({0, 2})), (31, 46, frozenset({0, 1}))]
    assert matched_lines(chunk, hits) == [b"db: ERROR timeout", b"FATAL and ERROR"]


def test_anchors_are_per_line(engine: str):
    chunk = lines("abc", "xabc", "abcx", "abc")
    assert matched_lines(chunk, scan(engine, ["^abc"], chunk)) == [b"abc", b"abcx", b"abc"]
    assert matched_lines(chunk, scan(engine, ["abc$"], chunk)) == [b"abc", b"xabc", b"abc"]
    assert matched_lines(chunk, scan(engine, ["^abc$"], chunk)) == [b"abc", b"abc"]
    # \A and \Z mean the start and end of the line too (Hyperscan reads them
    # as the start and end of the chunk: the translation must fix that)
    assert matched_lines(chunk, scan(engine, [r"\Aabc\Z"], chunk)) == [b"abc", b"abc"]


def test_case_sensitive_unless_the_pattern_says_so(engine: str):
    chunk = lines("ERROR one", "Error two", "error three", "no")
    assert matched_lines(chunk, scan(engine, ["error"], chunk)) == [b"error three"]
    assert len(scan(engine, ["(?i)error"], chunk)) == 3
    assert len(scan(engine, ["(?i:e)rror"], chunk)) == 2
    assert matched_lines(chunk, scan(engine, ["(?i)E(?-i:rror)"], chunk)) == [
        b"Error two",
        b"error three",
    ]


def test_named_groups(engine: str):
    chunk = lines("level=WARN x", "level=INFO y", "level=ERROR z")
    hits = scan(engine, [r"level=(?P<level>WARN|ERROR)\b"], chunk)
    assert matched_lines(chunk, hits) == [b"level=WARN x", b"level=ERROR z"]


@pytest.mark.parametrize("pattern", [r"a\sb", r"a[^x]b", r"a\Db", r"a\Wb", r"a\s+b", r"(?s)a.b"])
def test_a_match_across_a_line_break_is_no_match(engine: str, pattern: str):
    chunk = lines("xx a", "b yy", "a", "b")
    assert scan(engine, [pattern], chunk) == []
    chunk = lines("one", "xx a b", "three")
    assert matched_lines(chunk, scan(engine, [pattern], chunk)) == [b"xx a b"]


def test_a_literal_newline_never_matches(engine: str):
    assert scan(engine, [r"a\nb", "x|\n"], lines("a", "b", "x")) == [(4, 5, frozenset({1}))]


def test_the_last_line(engine: str):
    chunk = lines("one", "two", "ERROR last")
    assert scan(engine, ["ERROR"], chunk) == [(8, 18, frozenset({0}))]
    assert scan(engine, ["last$"], chunk) == [(8, 18, frozenset({0}))]
    # `$` also matches after the final newline, on no line at all
    assert scan(engine, ["^$"], chunk) == []


@pytest.mark.parametrize(
    "chunk",
    [
        b"\n00000000\xc3\xa9\n0000\n",
        b"\n\n\n\n\n0xxxx\n\nx00x0\n",
        b"x\nx\n\n0x\nx00xx000\n",
        b"\n0x\n00\nxx00x\n\nxx\n\nxx0x\n\n00xx\nx\n0\n",
    ],
)
def test_a_dollar_match_on_the_last_line(engine: str, chunk: bytes):
    """Vectorscan 5.4.12 misses these `$` matches (where the buffer ends)."""
    for pattern in (r"\d$", r"[0-9]+$", r"[^x]$"):
        assert scan(engine, [pattern], chunk)[-1][1] == len(chunk) - 1


@pytest.mark.parametrize(
    ("patterns", "chunk"),
    [
        (
            [r"\d$", "0$"],
            b"3\nxyyx\nxxy \n02y\ny1z331 110\ny\nzz\n\n  023z2222zy02y022\n3220 2 3y1yy20\n1\n\n",
        ),
        (
            [": ", r"\bab\b", r"\w+:\s*\d"],
            b"y:1:[:\t:[]:y]E1b\tE] []\nxO2: 2\nE:y:1[xR1y0[x\n]Eaxb\tOO R3O2ER\nR]\n1R 1\t\n\n",
        ),
        ([r"^$", r"^\d*$"], b"0\n x\n\xe9x\n 0x \nx\n \n x 00x0\n\nx0\nx\n"),
    ],
)
def test_patterns_vectorscan_misses_next_to_others(engine: str, patterns: list[str], chunk: bytes):
    """Found by fuzzing: Vectorscan 5.4.12 drops these matches of the last
    pattern when the others are in the same database (hence literals only)."""
    assert scan(engine, patterns, chunk) != []


def test_empty_lines(engine: str):
    chunk = lines("", "a", "", "", "b", "")
    assert [(start, end) for start, end, _ in scan(engine, ["^$"], chunk)] == [
        (0, 0),
        (3, 3),
        (4, 4),
        (7, 7),
    ]
    assert len(scan(engine, ["x*", ""], chunk)) == 6  # an empty match is a match


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a)\1",
        r"(?P<w>\w+) (?P=w)",
        r"foo(?!bar)",
        r"(?<=id=)\d+",
        r"(?<!\n)^x",  # per line nothing precedes the start, not even the newline
        r"x(?!\n)$",
        r"(?>a+)b",
        r"a++b",
        r"(x)?(?(1)y|z)",
    ],
)
def test_patterns_hyperscan_cannot_compile_still_match(engine: str, pattern: str):
    chunk = lines("aa", "abab", "foo", "foobar", "id=42", "x", "ab", "xy", "z", "hello hello")
    assert scan(engine, [pattern, "ERROR"], chunk) != []  # with engine == m.engine


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
def test_python_syntax_where_pcre_reads_it_differently(engine: str):
    """Patterns mean what Python says: Hyperscan reads `a{,2}c` as a literal and
    `[[:digit:]]` as a POSIX class; `\\s` includes the vertical tab."""
    chunk = lines("c", "aac", "a{,2}c", "[:]", "7", "a\x0bb")
    assert len(scan(engine, ["a{,2}c"], chunk)) == 3
    assert matched_lines(chunk, scan(engine, ["[[:digit:]]"], chunk)) == [b"[:]"]
    assert matched_lines(chunk, scan(engine, [r"a\sb"], chunk)) == [b"a\x0bb"]


def test_bytes_that_are_not_utf8(engine: str):
    chunk = b"caf\xe9\n\xff\xfe ERROR\n\xc9T\xc9\n"
    scan(engine, ["ERROR", "(?i)caf\\xc9", "\\xc9T", "[\\x80-\\xff]{2}"], chunk)


def test_word_boundaries_and_digits(engine: str):
    chunk = lines("a word here", "swordfish", "word", "took 1234ms", "id12")
    assert len(scan(engine, [r"\bword\b"], chunk)) == 2
    assert matched_lines(chunk, scan(engine, [r"\b\d+ms\b"], chunk)) == [b"took 1234ms"]


def test_lines_sorted_by_start_when_both_paths_find_them(engine: str):
    chunk = lines("aa", "ERROR", "bb", "ERROR aa", "cc")
    hits = scan(engine, ["ERROR", r"(a)\1"], chunk)
    assert [h[0] for h in hits] == sorted(h[0] for h in hits)
    assert [h[2] for h in hits] == [{1}, {0}, {0, 1}]


def test_no_patterns_match_nothing(engine: str):
    m = build_matcher([], engine)
    assert m.scan(lines("anything", "")) == []
    assert m.patterns == ()


def test_empty_chunk(engine: str):
    assert build_matcher(["x*"], engine).scan(b"") == []


def test_an_invalid_regex_names_the_pattern_and_the_reason(engine: str):
    with pytest.raises(ValueError, match=r"invalid regular expression 'a\(b': missing \)"):
        build_matcher(["ok", "a(b"], engine)


def test_the_matcher_keeps_its_patterns(engine: str):
    assert build_matcher(["a", "b"], engine).patterns == ("a", "b")


# -- engines ---------------------------------------------------------------------------


def test_auto_picks_hyperscan_when_installed():
    assert "re" in available_engines()
    assert set(available_engines()) <= set(ENGINES)
    expected = "hyperscan" if HAVE_HYPERSCAN else "re"
    assert build_matcher(["x"]).engine == expected


def test_asking_for_hyperscan_without_it_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(matcher_module, "_hyperscan", None)
    assert available_engines() == ("re",)
    with pytest.raises(ValueError, match="hyperscan package is not installed"):
        build_matcher(["x"], "hyperscan")
    assert build_matcher(["x"]).engine == "re"


def test_an_unknown_engine_is_an_error():
    with pytest.raises(ValueError, match="unknown matcher engine 'pcre'"):
        build_matcher(["x"], "pcre")


@needs_hyperscan
def test_one_matcher_scans_from_several_threads_at_once():
    m = build_matcher(["ERROR", r"status=5\d\d"], "hyperscan")
    chunk = lines(*(f"line {i} status={500 + i % 3 * 100}" for i in range(20_000)))
    expected = reference(m.patterns, chunk)
    results: list[Hits] = []

    def work() -> None:
        results.extend(m.scan(chunk) for _ in range(5))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(r == expected for r in results)


# -- real logs -------------------------------------------------------------------------

REAL_PATTERNS = [
    r"\[error\]",
    r"(?i)authentication failure",
    r"rhost=\d+\.\d+\.\d+\.\d+\s*$",
    r"^\w{3} \d\d \d\d:\d\d:\d\d combo sshd",
    r"Found child (\d+) in scoreboard slot \1",
    r"user (?!root)\w+",
    r"exception|timed out",
]


@pytest.mark.parametrize("name", ["Apache_2k.log", "Linux_2k.log", "HDFS_2k.log"])
def test_real_logs_match_as_per_line_re(engine: str, name: str):
    chunk = (LOGHUB / name).read_bytes()
    chunk = chunk if chunk.endswith(b"\n") else chunk + b"\n"
    assert scan(engine, REAL_PATTERNS, chunk) != []


# -- property: both engines and the definition agree ------------------------------------

POOL = [
    "ERROR",
    "ERROR|FATAL",
    "timeout exceeded",
    r"status=5\d\d",
    r"\d+",
    r"\d{3,}",
    r"^\d",
    r"\d$",
    r"^$",
    r"^\[",
    r"\]$",
    r"\[\w+\]",
    r"[a-c]+:",
    r"[^ ]:",
    r"[^a-z0-9]",
    r"(?i)error",
    r"(?i)[a-e]{2}",
    r"\s",
    r"\s\d",
    r"a\sb",
    r": ",
    r"\bab\b",
    r"\Bb",
    r"\w+:\s*\d",
    r"(ab|ba)+",
    r"(?P<n>a)(?P=n)",
    r"(\d)\1",
    r"a.c",
    r"x?y*",
    r"\Aa",
    r"b\Z",
    r"a{,2}b",
    r"ab[ac]",
    r"(?i)err",
    r"[Ee]RR",
    r"x{2}y",
    r"abc|cba",
    r"ab?c:",
    r"(?i)abc\d",
    r"ERR(?!O)",
    r"(?<=:)abc",
    r"c(ab)+\1",
    r"\bERROR\b",
    r"(?i:x)Y[Zz]",
]
ALPHABET = " 0123456789abcerxyzERO[]:\t"


@pytest.mark.parametrize("engine_name", [pytest.param("hyperscan", marks=needs_hyperscan), "re"])
@settings(max_examples=400, deadline=None)
@given(
    text=st.lists(st.text(ALPHABET, max_size=12), min_size=1, max_size=12),
    patterns=st.lists(st.sampled_from(POOL), max_size=6),
)
def test_each_engine_agrees_with_the_definition(
    engine_name: str, text: list[str], patterns: list[str]
):
    """Both engines equal to the per-line reference, hence to each other."""
    chunk = lines(*text)
    m: Matcher = build_matcher(patterns, engine_name)
    assert m.engine == engine_name
    assert m.scan(chunk) == reference(patterns, chunk)


def test_every_pattern_of_the_pool_is_translated():
    """None is left to the every-line-a-candidate fallback of the `re` search."""
    assert [
        p for p in POOL if matcher_module._translate(matcher_module._parse(p.encode()), 0) == b"^"
    ] == []


@needs_hyperscan
def test_hyperscan_takes_the_patterns_with_a_literal_and_re_the_others():
    patterns = [
        "ERROR|FATAL",
        r"status=5\d\d",
        r"\d$",
        r"(a)\1",
        r"user (?!root)\w+",
        "(?i)timeout",
        r"[Dd]isk quota",
        r"\w+: \d",
    ]
    m = build_matcher(patterns, "hyperscan")
    assert m.engine == "hyperscan"
    assert [patterns[i] for i in m.re_scanned] == [r"\d$", r"(a)\1", r"\w+: \d"]  # type: ignore[attr-defined]
    chunk = lines("user bob", "user root", "TimeOut", "disk quota", "aa 1", "status=503", "x: 1")
    assert [ids for _, _, ids in scan("hyperscan", patterns, chunk)] == [
        {4},
        {5},
        {6},
        {2, 3},
        {1, 2},
        {2, 7},
    ]
