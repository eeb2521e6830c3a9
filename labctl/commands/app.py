"""The command line: argv -> one use-case -> its result on screen.

The only place that catches LabctlError: it prints one line and a hint, and picks the exit code.
Anything else that escapes is a bug and surfaces as one (with --debug, its traceback). Each command
lives in a module of this package and is imported only when it runs (or when help lists them all):
`labctl status` loads what status needs, nothing of `up`'s.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from labctl import __version__
from labctl.commands.shared import Group
from labctl.errors import LabctlError, printable

MAX_DETAILS = 30

# command -> "module:function"; the modules import this one never (no circle).
COMMANDS = {
    "access": "labctl.commands.classroom:access",
    "box": "labctl.commands.setup:box",
    "boxes": "labctl.commands.setup:boxes",
    "cache": "labctl.commands.cache:cache",
    "cloud": "labctl.commands.cloud:cloud",
    "completion": "labctl.commands.setup:completion",
    "creds": "labctl.commands.machines:creds",
    "destroy": "labctl.commands.lifecycle:destroy",
    "exec": "labctl.commands.machines:exec_",
    "forget": "labctl.commands.lifecycle:forget",
    "halt": "labctl.commands.lifecycle:halt",
    "help": "labctl.commands.setup:help_",
    "hosts": "labctl.commands.hosts:hosts",
    "images": "labctl.commands.images:images",
    "init": "labctl.commands.setup:init",
    "inventory": "labctl.commands.classroom:inventory",
    "list": "labctl.commands.machines:list_",
    "logs": "labctl.commands.machines:logs",
    "plan": "labctl.commands.lifecycle:plan",
    "reset": "labctl.commands.classroom:reset",
    "resume": "labctl.commands.lifecycle:resume",
    "schema": "labctl.commands.setup:schema",
    "sheet": "labctl.commands.classroom:sheet",
    "snapshot": "labctl.commands.classroom:snapshot",
    "ssh": "labctl.commands.machines:ssh",
    "ssh-config": "labctl.commands.machines:ssh_config",
    "stack": "labctl.commands.lifecycle:stack",
    "status": "labctl.commands.machines:status",
    "sync": "labctl.commands.devloop:sync",
    "up": "labctl.commands.lifecycle:up",
}


class LazyGroup(Group):
    """A click group whose commands are imported when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module, name = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="labctl")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
def cli(debug: bool) -> None:
    """labctl: DevStack labs on libvirt virtual machines.

    One developer VM: `labctl up --distro debian`. More machines (controller and computes, a
    classroom): describe them in a lab.yaml (`labctl init` writes one) and run `labctl plan`.
    """


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` and cleanup runs, as for Ctrl-C."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    # SIGTERM is labctl's only while it runs: a program that calls main() (the tests do) gets its own back.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("LABCTL_DEBUG"))
    remote: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, remote = args[:cut], args[cut + 1:]
    obj: dict[str, object] = {"remote": remote}  # click's ctx.obj: the words after --, the Context
    try:
        result = cli.main(args=args, prog_name="labctl", standalone_mode=False, obj=obj)
    except LabctlError as exc:
        return _said(exc)
    except click.exceptions.Abort:
        click.echo("labctl: interrupted", err=True)
        return 130
    except click.ClickException as exc:  # click's own (a usage error): said the way labctl says its own
        message, hint = _click_error(exc)
        click.echo(f"labctl: error: {printable(message)}", err=True)
        if hint:
            click.echo(f"  hint: {printable(hint)}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("labctl: interrupted; what finished is kept, run the command again to go on", err=True)
        return 130
    except _Terminated:
        click.echo("labctl: terminated; what finished is kept, run the command again to go on", err=True)
        return 143
    except Exception as exc:
        if debug:
            raise
        return _unexpected(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if "context" in obj:
            from labctl.context import Context

            if isinstance(context := obj["context"], Context):
                context.close()
    return result if isinstance(result, int) else 0


def _said(exc: LabctlError) -> int:
    """labctl's own error, said on stderr (a line, its details, its hint); its exit code."""
    click.echo(f"labctl: error: {printable(exc.message)}", err=True)
    for line in exc.details[:MAX_DETAILS]:
        click.echo(f"  {printable(line)}", err=True)
    if len(exc.details) > MAX_DETAILS:
        click.echo(f"  ... and {len(exc.details) - MAX_DETAILS} more lines", err=True)
    if exc.hint:
        click.echo(f"  hint: {printable(exc.hint)}", err=True)
    return exc.exit_code


def _click_error(exc: click.ClickException) -> tuple[str, str]:
    """The message of one of click's errors, with the command it most likely meant and where help is."""
    import difflib
    import re

    message = exc.format_message().removesuffix(".")
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    if ctx is None:
        return message, ""
    command = ctx.command
    if (m := re.match(r"No such command '(.*)'", message)) and isinstance(command, click.Group):
        close = difflib.get_close_matches(m[1], command.list_commands(ctx), n=1)
        if close:
            message += f"; did you mean {close[0]}?"
    return message, f"{ctx.command_path} --help says what it takes"


def _unexpected(exc: Exception) -> int:
    """An exception no layer turned into labctl's own: one line, the traceback in a file."""
    from labctl.context import Context

    failure = Context.outside_failure(exc)  # an adapter's library error that escaped it
    if failure is not None:
        click.echo(f"labctl: error: {printable(failure.message)}", err=True)
        if failure.hint:
            click.echo(f"  hint: {printable(failure.hint)}", err=True)
        return failure.exit_code
    import traceback

    from labctl.state import labctl_home

    try:
        log = labctl_home() / "crash.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        where = f" (traceback in {log})"
    except (OSError, LabctlError):
        where = ""
    click.echo(f"labctl: internal error: {exc!r}{where}", err=True)
    click.echo("  hint: this is a bug in labctl; rerun with --debug and report it", err=True)
    return 1
