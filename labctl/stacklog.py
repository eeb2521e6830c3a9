"""Reading stack.sh's output as it streams: its phases and their durations, what it is doing inside a
phase, the URLs it serves, and secrets to mask. Pure (the clock comes in as an argument).

labctl's local.conf sets LOGFILE and VERBOSE=True: stack.sh then runs under xtrace with DevStack's
PS4, "+ FILE:FUNCTION:LINE   :   COMMAND" (tools/outfilter.py may put "YYYY-MM-DD HH:MM:SS.mmm | " in
front). Its phases are its `echo_summary` calls: in such a run they show only as the xtrace of the
call ("+ stack.sh:main:785 :   echo_summary 'Installing package prerequisites'"), the summary text
itself going to the summary file. Everything else on stdout is the output of apt, pip, git and
DevStack's own functions: never a phase, however much it looks like one ("Setting up libxcb1 ...").
A run without VERBOSE prints its summary lines bare on the terminal; those count only as long as no
traced echo_summary call was seen. At the end, unprefixed, stack.sh prints the host address, the
URLs of what it serves (Horizon only when Horizon runs) and "The password: ...".
"""

from __future__ import annotations

import re
import shlex
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MASK = "********"
TAIL_LINES = 30
STARTING = "starting"
# Between a phase and what DevStack is doing inside it, in a machine's progress line.
DETAIL_SEP = " · "
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \| ")
# DevStack's PS4 ('+ ${BASH_SOURCE}:${FUNCNAME[0]}:${LINENO} :   ', padded), one "+" per nesting level.
_XTRACE = re.compile(r"^\++ (?P<file>[^\s:]+):(?P<func>[^\s:]+):(?P<line>\d+)\s+:\s+(?P<cmd>.*)$")
# Summary lines printed bare (runs without VERBOSE): DevStack's own vocabulary only.
_SUMMARY_BARE = re.compile(
    r"^((Installing|Starting|Configuring|Initializing|Uploading|Creating|Enabling|Restarting) [A-Za-z][^=:]*|"
    r"stack\.sh completed in \d+ seconds\.)$")
# Not a phase: the first echo_summary only says where the log goes.
_NOT_A_PHASE = re.compile(r"^stack\.sh log ")
# A command of stack.sh's main line that says what DevStack is at: one of its functions
# (install_libs, create_keystone_accounts, stack_install_service keystone, git_clone URL ...).
_STEP = re.compile(r"^(?P<word>[a-z][a-z0-9]*_[a-z0-9_]+)(?:\s+(?P<arg>[^\s'\"]+))?")
# Predicates and small helpers DevStack calls everywhere: they say nothing of what it is at.
_TRIVIAL = re.compile(r"^(is_[a-z0-9_]+|[a-z0-9_]+_enabled|trueorfalse|die_if_not_set|get_field|local"
                      r"|time_start|time_stop)$")
_SOURCED = re.compile(r"^source \S*?/devstack/(?P<file>\S+)$")
_DASHBOARD = re.compile(r"^Horizon is now available at (?P<url>\S+)")
_KEYSTONE = re.compile(r"^Keystone is serving at (?P<url>\S+)")
_PASSWORD_LINE = re.compile(r"^(?P<head>.*The password: ).+$")
_FAILED = re.compile(r"^(stack\.sh failed|Error on exit|\[ERROR\])")


def strip_timestamp(line: str) -> str:
    return _TIMESTAMP.sub("", line, count=1)


def _summary_text(command: str) -> str | None:
    """The text of an `echo_summary ...` command as xtrace shows it (quoted as bash would)."""
    if not command.startswith("echo_summary "):
        return None
    rest = command[len("echo_summary "):]
    try:
        words = shlex.split(rest)
    except ValueError:  # an unbalanced quote: take the text as it stands
        words = [rest.strip("'\"")]
    text = " ".join(words).strip()
    return text or None


def phase_of(line: str, traced: bool = False) -> str | None:
    """The DevStack phase a line announces, or None. `traced`: a traced echo_summary call was seen
    already, so bare lines are output of the commands, never summaries."""
    text = strip_timestamp(line.rstrip("\r\n"))
    call = _XTRACE.match(text)
    if call:
        summary = _summary_text(call["cmd"])
        return None if summary is None or _NOT_A_PHASE.match(summary) else summary
    if not traced and _SUMMARY_BARE.match(text):
        return text
    return None


def step_of(line: str) -> str | None:
    """What DevStack is doing, from an xtrace line: the function of stack.sh's main line it is in
    (`create_keystone_accounts`), with the innermost function when that is another
    (`install_keystone (functions-common:pip_install)`)."""
    call = _XTRACE.match(strip_timestamp(line.rstrip("\r\n")))
    if call is None:
        return None
    if call["func"] == "main":
        cmd = call["cmd"]
        if (step := _STEP.match(cmd)) and not _TRIVIAL.match(step["word"]):
            word = step["word"]
            return f"{word} {step['arg']}" if word in ("stack_install_service", "run_phase") and step["arg"] \
                else word
        if sourced := _SOURCED.match(cmd):
            return sourced["file"]
        return None
    return None if _TRIVIAL.match(call["func"]) else f"{call['file']}:{call['func']}"


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
class _Span:
    name: str
    started: float
    ended: float | None = None


@dataclass
class StackProgress:
    """What a machine's stack.sh has said so far, and when (by `clock`)."""

    clock: Callable[[], float] = time.monotonic
    phase: str = STARTING
    phases: list[str] = field(default_factory=list)
    step: str | None = None  # DevStack's function at work inside the phase
    dashboard: str | None = None
    keystone: str | None = None
    failure_line: str | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    traced: bool = False
    _main_step: str | None = None
    _spans: list[_Span] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._spans.append(_Span(STARTING, self.clock()))

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
        if (call := _XTRACE.match(text)) and call["cmd"].startswith("echo_summary "):
            self.traced = True
        phase = phase_of(line, self.traced)
        if phase and phase != self.phase:
            self._start(phase)
            return phase
        self._follow(line)
        return None

    def _start(self, phase: str) -> None:
        now = self.clock()
        self._spans[-1].ended = now
        self._spans.append(_Span(phase, now))
        self.phase = phase
        self.phases.append(phase)
        self.step = self._main_step = None

    def _follow(self, line: str) -> None:
        step = step_of(line)
        if step is None:
            return
        call = _XTRACE.match(strip_timestamp(line.rstrip("\r\n")))
        if call is not None and call["func"] == "main":
            self._main_step = step
            self.step = step
        elif self._main_step and step != self._main_step:
            self.step = f"{self._main_step} ({step})"
        else:
            self.step = step

    def finish(self) -> None:
        """stack.sh ended: the last phase ends now."""
        if self._spans[-1].ended is None:
            self._spans[-1].ended = self.clock()

    def phase_times(self) -> list[tuple[str, float]]:
        """Each phase with its duration so far, in order (the one under way up to now)."""
        now = self.clock()
        out = []
        for span in self._spans:
            seconds = (now if span.ended is None else span.ended) - span.started
            if span.name == STARTING and seconds < 0.5 and len(self._spans) > 1:
                continue  # no time before the first phase worth showing
            out.append((span.name, round(seconds, 1)))
        return out


def slowest(phase_times: Iterable[tuple[str, float]], count: int = 3) -> list[tuple[str, float]]:
    return sorted(phase_times, key=lambda item: -item[1])[:count]


def parse(lines: Iterable[str], clock: Callable[[], float] = time.monotonic) -> StackProgress:
    progress = StackProgress(clock=clock)
    for line in lines:
        progress.feed(line)
    progress.finish()
    return progress
