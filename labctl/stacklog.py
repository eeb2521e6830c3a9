"""Reading stack.sh's output as it streams: its phases, its URLs, and secrets to mask. Pure.

With LOGFILE and VERBOSE=True (labctl's local.conf sets both), stack.sh writes every line to its
log and to stdout through tools/outfilter.py, which prefixes "YYYY-MM-DD HH:MM:SS.mmm | ". Its
summary lines (echo_summary) then go only to the summary file, but xtrace shows each call:
"+ ./stack.sh:main:776 : echo_summary 'Installing package prerequisites'". At the end, unprefixed,
it prints the host IP, the Horizon and Keystone URLs and "The password: ...".
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

MASK = "********"
TAIL_LINES = 30
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \| ")
# An xtrace line of an echo_summary call, after DevStack's PS4 prefix ("+ file:function:line : "):
# "+ ./stack.sh:main:776 :   echo_summary 'text'" (quotes optional).
_SUMMARY_CALL = re.compile(r"^\++ .*?\becho_summary\s+(?P<q>['\"]?)(?P<text>.+?)(?P=q)\s*$")
# A bare summary line (non-verbose runs print them on the terminal).
_SUMMARY_BARE = re.compile(
    r"^(Installing package prerequisites|Installing OpenStack project source|(Starting|Configuring|"
    r"Initializing|Uploading|Creating|Setting up|Running|Waiting for|Checking|Restarting) [A-Za-z][^=]*|"
    r"stack\.sh completed in \d+ seconds\.)$")
_DASHBOARD = re.compile(r"^Horizon is now available at (?P<url>\S+)")
_KEYSTONE = re.compile(r"^Keystone is serving at (?P<url>\S+)")
_PASSWORD_LINE = re.compile(r"^(?P<head>.*The password: ).+$")
_FAILED = re.compile(r"^(stack\.sh failed|Error on exit|\[ERROR\])")


def strip_timestamp(line: str) -> str:
    return _TIMESTAMP.sub("", line, count=1)


def phase_of(line: str) -> str | None:
    """The DevStack phase a line announces, or None."""
    text = strip_timestamp(line.rstrip("\r\n"))
    call = _SUMMARY_CALL.match(text)
    if call:
        return call["text"].strip()
    if _SUMMARY_BARE.match(text):
        return text
    return None


def mask(line: str, secrets: Iterable[str]) -> str:
    """The line with every secret and the value of "The password: ..." replaced by ********."""
    for secret in secrets:
        if secret:
            line = line.replace(secret, MASK)
    match = _PASSWORD_LINE.match(line.rstrip("\r\n"))
    if match:
        line = match["head"] + MASK + ("\n" if line.endswith("\n") else "")
    return line


@dataclass
class StackProgress:
    """What a machine's stack.sh has said so far."""

    phase: str = "starting"
    phases: list[str] = field(default_factory=list)
    dashboard: str | None = None
    keystone: str | None = None
    failure_line: str | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def feed(self, line: str) -> str | None:
        """Take one (already masked) line; return the new phase if it starts one."""
        text = strip_timestamp(line.rstrip("\r\n"))
        self.tail.append(line.rstrip("\r\n"))
        if (url := _DASHBOARD.match(text)) is not None:
            self.dashboard = url["url"]
        elif (url := _KEYSTONE.match(text)) is not None:
            self.keystone = url["url"]
        elif _FAILED.match(text) and self.failure_line is None:
            self.failure_line = text
        phase = phase_of(line)
        if phase and phase != self.phase:
            self.phase = phase
            self.phases.append(phase)
            return phase
        return None


def parse(lines: Iterable[str]) -> StackProgress:
    progress = StackProgress()
    for line in lines:
        progress.feed(line)
    return progress
