"""`labctl images`: the host's stacked images (labctl.images): list, rm, prune."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from labctl.commands.shared import Group, command_context, command_hypervisor, print_json

if TYPE_CHECKING:
    from labctl.images.store import ImageStore


def _store() -> ImageStore:
    from labctl.images.store import ImageStore

    return ImageStore(command_context().home.images_dir)


@click.group(cls=Group, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the images as JSON.")
@click.pass_context
def images(click_ctx: click.Context, as_json: bool) -> None:
    """The host's stacked images: a machine's disk once DevStack stacked, kept to start the next lab of
    the same stack in minutes instead of running stack.sh (`labctl up --fresh` always stacks).

    Without a subcommand: each image with its size, age, the lab that made it and how often it was used.
    """
    if click_ctx.invoked_subcommand is None:
        _show(as_json)


def _show(as_json: bool) -> None:
    import time

    from labctl.images.manage import listed, orphans
    from labctl.tables import Column, table
    from labctl.ui import make_console, safe

    store, hypervisor = _store(), command_hypervisor()
    states, left = listed(store, hypervisor), orphans(store, hypervisor)
    if as_json:
        print_json({"images": [s.as_json() for s in states], "orphans": [o.as_json() for o in left]})
        return
    console = make_console()
    if not states and not left:
        console.print("No stacked images on this host yet: a lab of one machine keeps one when it stacks.")
        return
    now = time.time()
    rows = [[s.image.digest, safe(f"{s.image.lab}/{s.image.machine}"), f"{s.image.size / 1024**3:.1f} GiB",
             _age(now - s.image.created), str(s.image.uses),
             _age(now - s.image.last_used) + " ago" if s.image.uses else "never",
             ", ".join(safe(u) for u in s.users) if s.users else ("" if s.present else "[red]its volume is gone[/]")]
            for s in states]
    rows += [[o.digest, "[yellow]no record: a keep cut short[/]", f"{o.size / 1024**3:.1f} GiB", "", "", "",
              ", ".join(safe(u) for u in o.users)] for o in left]
    columns = [Column("image"), Column("made by"), Column("size"), Column("age"), Column("uses", drop=2),
               Column("last used", drop=1), Column("under", fold=True, drop=3)]
    console.print(table(console, "Stacked images (labctl images rm IMAGE, labctl images prune)", columns, rows))
    if left:
        console.print(f"{len(left)} image volume(s) without a record (their keep was cut short) can make no machine:"
                      " `labctl images rm IMAGE` or any `labctl images prune` removes them.", markup=False)


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@images.command("rm")
@click.argument("digests", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def rm(digests: tuple[str, ...], as_json: bool) -> None:
    """Remove images (refused while a machine's disk stands on one: destroy its lab first)."""
    from labctl.images.manage import remove

    gone = remove(_store(), command_hypervisor(), digests)
    if as_json:
        print_json({"removed": gone})
    else:
        click.echo(f"removed {', '.join(gone)}")


@images.command("prune")
@click.option("--older-than", "days", type=click.FloatRange(min=0), metavar="DAYS",
              help="Remove images not used for more than DAYS days.")
@click.option("--max-size", "max_gib", type=click.FloatRange(min=0), metavar="GIB",
              help="Then remove the least recently used until the rest take at most GIB GiB.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed and kept as JSON.")
def prune(days: float | None, max_gib: float | None, as_json: bool) -> None:
    """Remove images by age and total size (and image volumes without a record); one a machine stands on
    is kept."""
    from labctl.errors import LabctlError
    from labctl.images.manage import prune as prune_images

    if days is None and max_gib is None:
        raise LabctlError("labctl images prune needs --older-than DAYS, --max-size GIB or both",
                          hint="labctl images prune --older-than 14 --max-size 60")
    gone, kept = prune_images(_store(), command_hypervisor(), days, max_gib)
    if as_json:
        print_json({"removed": gone, "kept_in_use": kept})
        return
    click.echo(f"removed {len(gone)} images{': ' + ', '.join(gone) if gone else ''}"
               + (f"; kept {', '.join(kept)}: machines stand on them" if kept else ""))
