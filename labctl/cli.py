"""The command line: argv -> one use-case -> its result on screen.

The only place that catches LabctlError: it prints one line and a hint, and picks the exit code.
Anything else that escapes is a bug and surfaces as one (with --debug, its traceback).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from labctl import __version__
from labctl.errors import LabctlError

F = TypeVar("F", bound=Callable[..., Any])
USER_ERROR = 2


def _home() -> Any:
    from labctl.state import LabHome, labctl_home

    return LabHome(labctl_home())


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def lab_options(func: F) -> F:
    """-f/--file and --lab: the options of every command that acts on a lab."""
    func = click.option("--lab", "lab_name", metavar="NAME", help="Act on the lab with this name.")(func)
    func = click.option("-f", "--file", "lab_file", type=click.Path(path_type=Path, dir_okay=False),
                        help="The lab file (default: ./lab.yaml, else the only lab there is).")(func)
    return func


def distro_options(func: F) -> F:
    """--distro and its overrides: a one-machine lab without a lab file."""
    for decorator in reversed([
        click.option("--distro", metavar="D", help="A one-machine all-in-one lab on this distro"
                     " (debian, debian:12, ubuntu:24.04...; see `labctl boxes`)."),
        click.option("--name", metavar="NAME", help="With --distro: the lab's name (default: from the distro)."),
        click.option("--memory", metavar="SIZE", help="With --distro: memory, e.g. 8G (default 8G)."),
        click.option("--cpus", type=int, metavar="N", help="With --distro: vCPUs (default 4)."),
        click.option("--disk", metavar="SIZE", help="With --distro: disk size, e.g. 40G (default 40G)."),
    ]):
        func = decorator(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="labctl")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
def cli(debug: bool) -> None:
    """labctl: DevStack labs on libvirt virtual machines.

    One developer VM: `labctl up --distro debian`. More machines (controller and computes, a
    classroom): describe them in a lab.yaml (`labctl init` writes one) and run `labctl plan`.
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
def boxes(as_json: bool) -> None:
    """List the distros and releases labctl can build labs on."""
    from labctl.catalog import MASTER, default_catalog

    catalog = default_catalog()
    if as_json:
        _print_json([{
            "distro": r.ref, "family": r.family, "version": r.version, "codename": r.codename,
            "default": r.version == next(f.default for f in catalog.families if f.name == r.family),
            "box": r.box, "user": r.user, "package_family": r.package_family,
            "min_memory_mb": r.min_memory_mb, "min_disk_gb": r.min_disk_gb,
            "devstack_distro": r.devstack_distro, "devstack_branches": list(r.devstack_branches),
            "local_build": r.local_build, "note": r.note,
        } for r in catalog.releases()])
        return
    from labctl.ui import make_console, print_boxes

    print_boxes(make_console(), catalog, MASTER)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default="lab.yaml")
@click.option("--name", default="mylab", show_default=True, help="The lab's name.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, name: str, force: bool) -> None:
    """Write a commented example lab.yaml to PATH (default ./lab.yaml)."""
    from labctl.lab import init_lab_file

    written = init_lab_file(path, name, force)
    click.echo(f"Wrote {written}. Edit it, then run `labctl plan -f {written}`.")


@cli.command()
@lab_options
@distro_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(lab_file: Path | None, lab_name: str | None, distro: str | None, name: str | None,
         memory: str | None, cpus: int | None, disk: str | None, as_json: bool) -> None:
    """Check a lab, write its Vagrantfile and local.conf files, and show what it will build.

    Creates nothing but files in the lab's folder under $LABCTL_HOME.
    """
    from labctl.catalog import default_catalog
    from labctl.host import read_host
    from labctl.lab import LabRequest, plan_lab, resolve_lab

    home = _home()
    req = LabRequest(file=lab_file, lab=lab_name, distro=distro, name=name, memory=memory,
                     cpus=cpus, disk=disk)
    lab, generated = resolve_lab(req, home, default_catalog(), Path.cwd())
    result = plan_lab(lab, home, read_host(), generated)
    if as_json:
        _print_json(result.as_json())
        return
    from labctl.ui import make_console, print_plan

    print_plan(make_console(), result)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("LABCTL_DEBUG"))
    try:
        result = cli.main(args=args, prog_name="labctl", standalone_mode=False)
    except LabctlError as exc:
        click.echo(f"labctl: error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("labctl: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("labctl: interrupted", err=True)
        return 130
    except Exception:
        if debug:
            raise
        import traceback

        from labctl.state import labctl_home

        log = labctl_home() / "crash.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            where = f" (traceback in {log})"
        except OSError:
            where = ""
        click.echo(f"labctl: internal error: {sys.exc_info()[1]!r}{where}", err=True)
        click.echo("  hint: this is a bug in labctl; rerun with --debug and report it", err=True)
        return 1
    return result if isinstance(result, int) else 0
