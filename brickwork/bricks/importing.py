"""`bricks import`: a brick directory, a plain PEFT adapter directory, or an exported archive."""

from __future__ import annotations

import shutil
from pathlib import Path

from brickwork.bricks.archive import extract_archive, is_archive
from brickwork.bricks.manifest import MANIFEST_NAME, Manifest, check_name
from brickwork.bricks.store import Brick, BrickStore
from brickwork.bricks.validate import validate_lora_dir
from brickwork.lora import refuse_pickles
from brickwork.errors import LibraryError, ManifestError


def import_brick(
    store: BrickStore,
    source: str | Path,
    *,
    name: str | None = None,
    description: str | None = None,
    examples: list[str] | None = None,
    tags: list[str] | None = None,
) -> Brick:
    """Import `source` as a new version in `store`; validated in full before the library changes.

    A directory with `brick.json` keeps its manifest (its base-model fingerprint must match);
    a bare PEFT LoRA directory needs `name` and `description`.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise LibraryError(f"{source} does not exist")
    if name is not None:
        check_name(name)
    tmp = store.scratch_dir("import.")
    try:
        if is_archive(source):
            src = extract_archive(source, tmp)
        elif source.is_dir():
            src = source
        else:
            raise LibraryError(f"{source}: expected a brick directory, a PEFT adapter directory or a .tar.gz archive")
        refuse_pickles(src)
        if (src / MANIFEST_NAME).is_file():
            manifest = Manifest.load(src / MANIFEST_NAME)
            changes = {k: v for k, v in {"name": name, "description": description, "examples": examples, "tags": tags}.items() if v}
            if changes:
                manifest = manifest.replace(**changes)
        else:
            if not name or not description:
                raise ManifestError(
                    f"{source} has no {MANIFEST_NAME}: give --name and --description to import it as a new brick"
                )
            cfg = validate_lora_dir(src, store.base)
            manifest = Manifest(
                name=name,
                version=1,
                kind="lora",
                description=description,
                examples=examples or [],
                tags=tags or ["imported"],
                base_model=store.base.to_json(),
                rank=cfg["r"],
                target_modules=sorted(cfg["target_modules"]) if isinstance(cfg["target_modules"], list) else [cfg["target_modules"]],
                provenance={"imported_from": str(source)},
            )
        return store.add(src, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
