"""New error signatures (`new_errors`): an error line whose template (the
line with its variable parts masked) this host has never seen (the design
is `template()`'s and `SignatureDetector`'s docstrings)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from agent.core.schema import opt
from collectors.logs.detectors.base import DETECTORS, Detector, Finding
from collectors.logs.detectors.syslog import BSD_TS, DAYS, ISO_TS, MONTHS, SYSLOG


@dataclass(frozen=True, kw_only=True)
class SignatureOptions:
    max_templates: int = opt(4096, min=16)  # error signatures remembered per host


_TEMPLATE_MAX_CHARS = 2048
_HEX = "0-9A-Fa-f"
_TS_ANYWHERE = re.compile(
    "|".join(
        (
            ISO_TS,
            rf"\b(?:(?:{DAYS})\s+)?{BSD_TS}(?:\s+\d{{4}})?\b",
            rf"\b\d{{1,2}}/(?:{MONTHS})/\d{{4}}:\d{{2}}:\d{{2}}:\d{{2}}(?:\s[+-]\d{{4}})?",
            r"\b\d{4}/\d{2}/\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?",
            r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b",
        )
    )
)
_MASKS: tuple[tuple[re.Pattern[str], str, str | None], ...] = (  # pattern, mask, a must
    (_TS_ANYWHERE, "<ts>", ":"),
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+"), "<url>", "://"),
    (re.compile(r'"(?:[^"\\]|\\.)*"'), "<str>", '"'),
    (re.compile(r"(?<!\w)'[^'\n]*'(?!\w)"), "<str>", "'"),
    (
        re.compile(
            rf"(?<![{_HEX}])[{_HEX}]{{8}}(?:-[{_HEX}]{{4}}){{3}}-[{_HEX}]{{12}}(?![{_HEX}])"
        ),
        "<uuid>",
        "-",
    ),
    (re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"), "<ip>", "."),
)
_IPV6_CANDIDATE = re.compile(
    rf"(?<![\w:.])(?:[{_HEX}]{{0,4}}:){{2,7}}(?:<ip>|[{_HEX}]{{1,4}})?(?![\w:])"
)
_PATH = re.compile(r"(?<![\w.<>/])(?:~|\.{1,2})?(?:/[^\s/\"'<>\[\](){},;:=]+)+/?")
_HEX_ID = re.compile(
    rf"(?<![A-Za-z0-9])(?:0[xX][{_HEX}]+|(?=[{_HEX}]*\d)(?=[{_HEX}]*[A-Fa-f])[{_HEX}]{{6,}})"
    r"(?![A-Za-z0-9])"
)
_NUM = re.compile(r"(?:(?<=[\s_:=(\[,])-)?\d+(?:[.,]\d+)*")  # "blk_-123": sign too
_SPACE = re.compile(r"\s+")


def _ipv6(match: re.Match[str]) -> str:
    text = match.group()
    if "::" in text or "<ip>" in text or any(c in "abcdefABCDEF" for c in text):
        return "<ip>"
    return text


def template(line: str) -> str:
    """The error signature of a line: variable parts masked, so the same
    error at another time, for another id or address, gives the same text.

    A syslog prefix (time stamp, host, `prog[pid]:`) becomes `prog:`; then
    time stamps (`<ts>`), URLs (`<url>`), quoted strings (`<str>`), UUIDs
    (`<uuid>`), IPv4/IPv6 addresses with an optional port (`<ip>`), absolute
    and relative paths (`<path>`), hex ids (`<hex>`: `0x...`, or 6+ hex
    digits mixing letters and digits) and numbers (`<num>`, with a sign after
    `_`, `:`, `=`, ...) are masked, and white space is collapsed. Only the
    first 2048 characters are used.
    """
    text = line[:_TEMPLATE_MAX_CHARS].rstrip("\r\n")
    header = SYSLOG.match(text)
    if header is not None:
        module = f"({header['module']})" if header["module"] is not None else ""
        text = f"{header['prog']}{module}: {header['msg']}"
    # Each mask runs only if the line holds the character every match of it
    # needs (the masks put in none of them): the same result, at half the cost.
    for pattern, mask, needs in _MASKS:
        if needs is None or needs in text:
            text = pattern.sub(mask, text)
    if text.count(":") >= 2:
        text = _IPV6_CANDIDATE.sub(_ipv6, text)
    if "/" in text:
        text = _PATH.sub("<path>", text)
    text = _HEX_ID.sub("<hex>", text)
    text = _NUM.sub("<num>", text)
    return _SPACE.sub(" ", text).strip()


def _signature(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@DETECTORS.register("new_errors")
class SignatureDetector(Detector):
    """New error signatures: an error line whose `template()` this host has never seen.

    `feed()` trusts its caller: it is given only error lines, those that
    matched ERROR_PATTERN or a rule (`rule` names it), or a JSON line's
    message whose level field says error; it does not match again. A new
    signature goes into the line's own rule event (`new_signature`,
    `template`) when the line is one. Templates are kept as 64-bit BLAKE2b
    hashes, at most `max_templates` of them; when full, new templates are
    neither learned nor reported, and `dropped` counts those lines (export
    it as a counter). Known templates stay known for good: the set is
    persisted by `snapshot()` (in a checkpoint part of its own, `templates`,
    as it can be large) and never aged out.
    """

    Options = SignatureOptions
    takes = "errors"
    state_part = "templates"
    SNAPSHOT_VERSION = 1
    LINE_MAX_CHARS = 1024  # of the line carried in a finding

    def __init__(self, max_templates: int = 4096) -> None:
        if max_templates < 0:
            raise ValueError("max_templates must be >= 0")
        self.max_templates = max_templates
        self.dropped = 0
        self._seen: set[int] = set()

    @classmethod
    def configured(cls, options: SignatureOptions, state: Any) -> SignatureDetector:
        return cls.restore(state, options.max_templates) if state else cls(options.max_templates)

    def __len__(self) -> int:
        return len(self._seen)

    def feed(self, line: str, file: str, now: float, rule: str | None = None) -> list[Finding]:
        text = template(line)
        signature = _signature(text)
        if signature in self._seen:
            return []
        if len(self._seen) >= self.max_templates:
            self.dropped += 1
            return []
        self._seen.add(signature)
        shown = line.rstrip("\r\n")[: self.LINE_MAX_CHARS]
        return [
            Finding(
                detector="new_error",
                severity="medium",
                message=f"new error in {file}: {text[:200]}",
                fields={"template": text, "file": file, "line": shown, "rule": rule},
                fold={"new_signature": True, "template": text},
            )
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.SNAPSHOT_VERSION,
            "templates": sorted(self._seen),
            "dropped": self.dropped,
        }

    @classmethod
    def restore(cls, data: dict[str, Any], max_templates: int = 4096) -> SignatureDetector:
        """A detector from `snapshot()`'s dict; a fresh one if it cannot be read."""
        det = cls(max_templates)
        try:
            if data.get("version") != cls.SNAPSHOT_VERSION:
                return det
            seen = {int(h) for h in data["templates"]}
            dropped = int(data.get("dropped", 0))
        except (KeyError, TypeError, ValueError, AttributeError):
            return det
        det._seen = set(sorted(seen)[:max_templates])
        det.dropped = dropped
        return det
