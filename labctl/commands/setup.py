"""Commands that prepare the host: the distro catalogue, `init`, and boxes."""

from __future__ import annotations

from pathlib import Path

import click

from labctl.commands.shared import (
    MIRROR_HELP,
    Group,
    command_context,
    debian_mirror,
    make_reporter,
    print_json,
)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
def boxes(as_json: bool) -> None:
    """List the distros and releases labctl can build labs on."""
    from labctl.catalog import MASTER, default_catalog

    catalog = default_catalog()
    if as_json:
        print_json({"releases": [{
            "distro": r.ref, "family": r.family, "version": r.version, "codename": r.codename,
            "default": r.version == next(f.default for f in catalog.families if f.name == r.family),
            "box": r.box, "user": r.user, "package_family": r.package_family,
            "min_memory_mb": r.min_memory_mb, "min_disk_gb": r.min_disk_gb,
            "devstack_distro": r.devstack_distro, "devstack_branches": list(r.devstack_branches),
            "local_build": r.local_build, "note": r.note, "proven": dict(r.proven),
        } for r in catalog.releases()]})
        return
    from labctl.ui import make_console, print_boxes

    print_boxes(make_console(), catalog, MASTER)


@click.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default="lab.yaml")
@click.option("--name", help="The lab's name (default: its folder's name, made a valid one).")
@click.option("--classroom", "seats", type=int, is_flag=False, flag_value=12, default=None, metavar="[SEATS]",
              help="Write a classroom of SEATS seats (12 if not given) instead of one machine.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, name: str | None, seats: int | None, force: bool) -> None:
    """Write a commented example lab.yaml to PATH (default ./lab.yaml): one DevStack machine, or a
    classroom with --classroom."""
    from labctl.lab import init_lab_file

    written, schema_file = init_lab_file(path, name, force, seats)
    then = "labctl plan" if written == Path("lab.yaml") else f"labctl plan -f {written}"
    click.echo(f"Wrote {written} and {schema_file} (editors check lab.yaml with it). Edit it, then run `{then}`.")


@click.command(short_help="Print lab.yaml's JSON Schema, for editors and scripts.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Write it to FILE instead of printing it.")
def schema(output: Path | None) -> None:
    """Print lab.yaml's JSON Schema, for editors that check and complete lab.yaml (VS Code's YAML
    extension, any yaml-language-server client) and for scripts."""
    from labctl.lab import write_schema

    if output is None:
        import json

        from labctl.labfile.shape import schema as lab_schema

        click.echo(json.dumps(lab_schema(), indent=2))  # a JSON Schema document, not a command's result
        return
    write_schema(output)
    click.echo(f"Wrote {output}. Point your editor at it with this first line in lab.yaml:"
               f" # yaml-language-server: $schema={output.name}", err=True)


@click.command(name="help")
@click.argument("topic", required=False)
def help_(topic: str | None) -> None:
    """Read labctl's documentation in the terminal: `labctl help` lists the topics, `labctl help
    classroom` shows one (the docs/ pages, also online beside the code)."""
    from labctl.errors import LabctlError
    from labctl.resources import data_path

    pages = {p.stem: p for p in sorted(data_path("docs").glob("*.md"))}
    if topic is None:
        from labctl.ui import make_console

        console = make_console()
        console.print("Topics (labctl help TOPIC):", markup=False)
        for name, page in pages.items():
            title = next((line.lstrip("# ").strip() for line in page.read_text(encoding="utf-8").splitlines()
                          if line.startswith("# ")), name)
            console.print(f"  {name:<16} {title}", markup=False)
        console.print("Each command's own: labctl COMMAND --help", markup=False)
        return
    if topic not in pages:
        import difflib

        close = difflib.get_close_matches(topic, list(pages), n=1)
        raise LabctlError(f"no help topic {topic!r}" + (f"; did you mean {close[0]}?" if close else ""),
                          hint=f"the topics: {', '.join(pages)}")
    from rich.markdown import Markdown

    from labctl.ui import make_console

    console = make_console()
    markdown = Markdown(pages[topic].read_text(encoding="utf-8"))
    if console.is_terminal:
        with console.pager(styles=True):
            console.print(markdown)
    else:
        console.print(markdown)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print SHELL's completion script for labctl: commands, options, lab names (--lab) and the lab's
    machine names (seat-07...). Bash: `eval "$(labctl completion bash)"` in ~/.bashrc."""
    from click.shell_completion import get_completion_class

    kind = get_completion_class(shell)
    assert kind is not None  # click knows the three shells of the choice
    root = click.get_current_context().find_root().command  # labctl's own group, not imported here
    click.echo(kind(root, {}, "labctl", "_LABCTL_COMPLETE").source())


@click.group(cls=Group)
def box() -> None:
    """Build and list Vagrant boxes."""


@box.command(name="build")
@click.argument("distro")
@click.option("--mirror", metavar="URL", help=MIRROR_HELP)
def box_build(distro: str, mirror: str | None) -> None:
    """Build a box of DISTRO from its packages (offline from box registries) and add it to Vagrant."""
    from labctl.boxes import build_box_command, cache_driver
    from labctl.catalog import default_catalog

    ctx = command_context()
    reporter = make_reporter()
    name, path = build_box_command(distro, ctx, cache_driver(ctx), reporter, debian_mirror(mirror), default_catalog())
    reporter.step(f"box {name} is ready (file: {path})")


@box.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the boxes as JSON.")
def box_list(as_json: bool) -> None:
    """List the boxes Vagrant has on this host."""
    from labctl.boxes import cache_driver

    boxes = cache_driver(command_context()).box_list()
    if as_json:
        print_json({"boxes": [{"name": n, "provider": p, "version": v} for n, p, v in boxes]})
        return
    for n, p, v in boxes:
        click.echo(f"{n:40} {p:10} {v}")
    if not boxes:
        click.echo("No boxes yet: labctl box build debian makes one.")
