"""``labctl images``: build and list the cached guest images."""

from __future__ import annotations

import time
from dataclasses import dataclass

import typer
from rich.markup import escape

from labctl import backends, console
from labctl.backends.base import Backend, VmTemplate
from labctl.cli import tables
from labctl.cli.app import app
from labctl.cli.progress import Steps
from labctl.images.cache import BuildOutcome
from labctl.images.recipe import Manifest
from labctl.images.registry import standard_images, store
from labctl.lab.plan import lab_images

images_app = typer.Typer(
    help="Build and list the guest images (built locally from Debian packages)."
)
app.add_typer(images_app, name="images")


@dataclass(frozen=True)
class ImageRow:
    """One image in ``labctl images list``."""

    name: str
    status: str  # ready, missing, outdated, missing from engine
    recipe_hash: str
    description: str
    manifest: Manifest | None


def _size(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB"


@images_app.command("build")
def build(
    names: list[str] = typer.Argument(
        None, metavar="NAME", help="Images to build (default: those the labs run on this host)."
    ),
    all_images: bool = typer.Option(
        False,
        "--all",
        help="Build every image, the other VM profile's too (not the optional vm-s390x: name it).",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the recipe did not change."),
    json_out: bool = tables.json_option("Print the outcome as JSON."),
) -> None:
    """Build the images the labs need (and what they are built from); only what changed."""
    s = store()
    wanted = names or (standard_images() if all_images else lab_images())
    outcomes: list[BuildOutcome] = []
    started = time.monotonic()
    with Steps(console.err, quiet=json_out) as steps:

        def on_stage(image: str, stage: str) -> None:
            steps.step(image, stage)

        def on_done(outcome: BuildOutcome) -> None:
            outcomes.append(outcome)
            steps.step(outcome.name, f"{outcome.verb} ({_size(outcome.manifest.total_size)})", True)

        s.build(wanted, force=force, on_stage=on_stage, on_done=on_done)
    if json_out:
        console.print_json(
            {
                "seconds": round(time.monotonic() - started, 1),
                "images": [
                    {"name": o.name, "built": o.built, "seconds": o.seconds, "manifest": o.manifest}
                    for o in outcomes
                ],
            }
        )
    else:
        total = time.monotonic() - started
        console.err.print(f"{tables.plural(len(outcomes), 'image')} ready in {total:.1f} s")


@images_app.command("list")
def list_images(
    json_out: bool = tables.JsonOpt,
    wide: bool = tables.WideOpt,
) -> None:
    """Show each image: built or missing, size, when it was built and how long it took."""
    s = store()
    hashes = s.hashes(s.recipes)
    rows: list[ImageRow] = []
    for name, recipe_hash in hashes.items():
        status = s.status(name, recipe_hash)
        rows.append(
            ImageRow(name, status, recipe_hash, s.recipes[name].description, s.manifest(name))
        )
    if json_out:
        console.print_json(rows)
        return
    table = tables.table("image", "status", "size", "built", "took", *(["description"] * wide))
    for r in rows:
        m = r.manifest
        table.add_row(
            r.name,
            r.status,
            _size(m.total_size) if m else "-",
            m.built_at.replace("T", " ")[:16] if m else "-",
            f"{m.build_seconds:.0f} s" if m else "-",
            *([r.description] * wide),
        )
    console.out.print(table)
    made = keeper().templates(built(rows))
    if made:
        console.out.print("\nVM templates (a VM's boot saved once; its guests start from it):")
        _print_templates(made, wide)


def keeper() -> Backend:
    """The engine that keeps VM templates."""
    return backends.get("libvirt")


def built(rows: list[ImageRow] | None = None) -> dict[str, str]:
    """Image name -> recipe hash of the build in the cache: what guests start from now (an
    outdated image still runs until it is built again), so what templates are judged by."""
    if rows is None:
        s = store()
        return {n: m.recipe_hash for n in s.recipes if (m := s.manifest(n)) is not None}
    return {r.name: r.manifest.recipe_hash for r in rows if r.manifest is not None}


def _print_templates(made: list[VmTemplate], wide: bool) -> None:
    table = tables.table("image", "devices", "size", "made", *(["accel", "boot", "name"] * wide))
    for t in made:
        table.add_row(
            t.image,
            escape(t.devices or "-"),
            _size(t.size),
            "being made" if t.busy else (t.made_at or "-").replace("T", " ")[:16],
            *(
                [t.accel or "-", f"{t.boot_seconds:.0f} s" if t.boot_seconds else "-", t.name]
                * wide
            ),
        )
    if wide:
        tables.print_unwrapped(console.out, table)
    else:
        console.out.print(table)
    stale = [t for t in made if t.stale]
    for t in stale:
        console.out.print(
            f"[yellow]{escape(t.image)}[/yellow] ({t.name}): stale, {escape(t.stale or '')}"
        )
    if stale:
        freed = _size(sum(t.size for t in stale))
        console.out.print(
            f"labctl images prune removes {tables.plural(len(stale), 'stale template')} ({freed})."
        )


@images_app.command("templates")
def templates(
    json_out: bool = tables.JsonOpt,
    wide: bool = tables.WideOpt,
) -> None:
    """Show the VM templates kept on this host: image, devices, size, and whether one is stale."""
    made = keeper().templates(built())
    if json_out:
        console.print_json(made)
    elif made:
        _print_templates(made, wide)
    else:
        console.err.print("No VM templates: the first labctl up of a Debian VM makes one.")


@images_app.command("prune")
def prune(
    json_out: bool = tables.json_option("Print what was removed as JSON."),
) -> None:
    """Remove the VM templates no guest will start from again (image rebuilt, QEMU upgraded, ...).

    Running guests are not touched: each holds its own links to its template's disk. A
    template another labctl holds now is left for the next prune.
    """
    engine, hashes = keeper(), built()
    removed = engine.prune_templates(hashes)
    left = [t for t in engine.templates(hashes) if t.stale]
    if json_out:
        console.print_json({"removed": removed, "left": left})
        return
    for t in removed:
        console.out.print(f"removed {t.name} ({_size(t.size)}): {t.stale}")
    for t in left:
        console.out.print(f"[yellow]left {t.name}[/yellow]: another labctl holds it now")
    console.err.print(
        f"{tables.plural(len(removed), 'stale template')} removed, "
        f"{_size(sum(t.size for t in removed))} freed."
    )
