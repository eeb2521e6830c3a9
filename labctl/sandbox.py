"""Jinja for text from strangers: the local.conf.d fragments of a lab folder someone downloaded.

A fragment is rendered in Jinja's immutable sandbox, over plain data (dicts, lists, strings and
numbers: never labctl's objects, whose attributes lead to Python's internals and to the host's
files), with no loader (`{% include %}` and friends reach nothing), and within bounds: no number or
string grows past MAX_VALUE, the output stops at MAX_OUTPUT characters, the rendering at
MAX_SECONDS. Whatever goes wrong in a fragment is the fragment's error, one line naming its file.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from labctl.errors import FragmentError

MAX_OUTPUT = 256 * 1024  # characters of one rendered fragment
MAX_VALUE = 100_000  # characters of a string, items of a list, digits of a number made by * or **
MAX_SECONDS = 5.0
CONTEXT_HINT = "fragments may use lab, machine, controller, passwords, devstack"


class _TooSlow(Exception):
    pass


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` kept from making huge values."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: object, right: object) -> object:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
        if operator == "**" and numbers and isinstance(right, int | float) and abs(right) > 64:
            raise FragmentError(f"{left} ** {right} is too large a number for a fragment")
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if isinstance(sized, str | list | tuple) and isinstance(count, int) and len(sized) * count > MAX_VALUE:
                    raise FragmentError(f"a value of {len(sized) * count} characters or items is too large for a"
                                        " fragment")
            if numbers and isinstance(left, int) and isinstance(right, int) and \
                    left.bit_length() + right.bit_length() > 4 * MAX_VALUE:
                raise FragmentError("too large a number for a fragment")
        return super().call_binop(context, operator, left, right)


# Not HTML: fragments are local.conf text, parsed and validated after rendering.
_ENV = _BoundedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt a rendering that runs too long (a loop that prints nothing never reaches the output
    cap). A timer signal works only in the main thread, where the CLI renders; elsewhere, the output
    cap alone bounds it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def render_untrusted(text: str, context: Mapping[str, object], origin: str) -> str:
    """Render a fragment; any failure is a FragmentError naming `origin`."""
    try:
        template = _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise FragmentError(f"{origin}:{exc.lineno}: template error: {exc.message}") from None
    out: list[str] = []
    size = 0
    try:
        with _deadline(MAX_SECONDS):
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise FragmentError(f"{origin}: renders to more than {MAX_OUTPUT // 1024} KiB",
                                        hint="a local.conf fragment is a few lines")
                out.append(chunk)
    except FragmentError as exc:
        if exc.message.startswith(origin):
            raise
        raise FragmentError(f"{origin}: {exc.message}", hint=exc.hint) from None
    except _TooSlow:
        raise FragmentError(f"{origin}: took more than {MAX_SECONDS:.0f} s to render",
                            hint="a local.conf fragment is a few lines") from None
    except jinja2.UndefinedError as exc:
        raise FragmentError(f"{origin}: {exc.message}", hint=CONTEXT_HINT) from None
    except jinja2.TemplateError as exc:  # the sandbox refusing something, {% include %} with no loader
        raise FragmentError(f"{origin}: not allowed in a fragment: {_one_line(str(exc))}", hint=CONTEXT_HINT) \
            from None
    except Exception as exc:  # whatever a template does wrong (1/0, [][5]) is its own error
        raise FragmentError(f"{origin}: {type(exc).__name__}: {_one_line(str(exc))}") from None
    return "".join(out)


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."
