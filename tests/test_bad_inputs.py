"""Table-driven bad inputs: each gets a clear error and leaves the library exactly as it was."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from brickwork.bricks.importing import import_brick
from brickwork.errors import (
    AdapterError,
    BaseModelMismatch,
    BrickNotFound,
    BrickworkError,
    InvalidBrickName,
    LibraryError,
    ManifestError,
)
from tests.conftest import write_lora_adapter


def snapshot(root: Path) -> dict[str, str]:
    """Every file's content hash, ignoring the lock file (scratch dirs must be left empty)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _edit_manifest(d: Path, fn) -> Path:
    data = json.loads((d / "brick.json").read_text())
    fn(data)
    (d / "brick.json").write_text(json.dumps(data))
    return d


def _edit_config(d: Path, **changes) -> Path:
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg.update(changes)
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    return d


def _archive(tmp: Path, members: list[tuple[str, bytes | None, str | None]]) -> Path:
    """members: (name, data, linkname); data None + linkname = symlink."""
    path = tmp / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return path


def _wrong_shapes(d: Path, base) -> Path:
    from safetensors.torch import load_file, save_file

    t = load_file(str(d / "adapter_model.safetensors"))
    key = next(k for k in t if k.endswith("lora_A.weight"))
    t[key] = t[key][:, :100].contiguous()
    save_file(t, str(d / "adapter_model.safetensors"))
    return d


def _other_base(d: Path, base) -> Path:
    return _edit_manifest(d, lambda m: m["base_model"].update(id="llama-3-8b", fingerprint="sha256:" + "0" * 32))


CASES = {
    "malformed-json": (lambda d, b: (d / "brick.json").write_text("{not json") and d, ManifestError, "not valid JSON"),
    "missing-keys": (lambda d, b: _edit_manifest(d, lambda m: (m.pop("description"), m.pop("base_model"))), ManifestError, "missing keys"),
    "wrong-type": (lambda d, b: _edit_manifest(d, lambda m: m.update(version="one")), ManifestError, "`version`"),
    "unknown-kind": (lambda d, b: _edit_manifest(d, lambda m: m.update(kind="magic")), ManifestError, "`kind`"),
    "routing-samples-not-a-list": (lambda d, b: _edit_manifest(d, lambda m: m.update(routing_samples="plural of ox")),
                                   ManifestError, "`routing_samples` should be a list of strings"),
    "bad-name-in-manifest": (lambda d, b: _edit_manifest(d, lambda m: m.update(name="../../etc")), InvalidBrickName, "invalid brick name"),
    "other-base-model": (_other_base, BaseModelMismatch, "made for base model 'llama-3-8b'"),
    "wrong-shapes": (_wrong_shapes, AdapterError, "does not fit the base model"),
    "pickle-file": (lambda d, b: (d / "adapter_model.bin").write_bytes(b"\x80\x04pickle") and d, AdapterError, "pickled"),
    "rank-not-vllm": (lambda d, b: _edit_config(d, r=4), AdapterError, "vLLM's ranks"),
    "dora": (lambda d, b: _edit_config(d, use_dora=True), AdapterError, "DoRA"),
    "bias": (lambda d, b: _edit_config(d, bias="all"), AdapterError, "`bias`"),
    "corrupt-weights": (
        lambda d, b: (d / "adapter_model.safetensors").write_bytes((d / "adapter_model.safetensors").read_bytes()[:500]) and d,
        AdapterError,
        "corrupt",
    ),
    "no-weights": (lambda d, b: (d / "adapter_model.safetensors").unlink() or d, AdapterError, "no adapter_model.safetensors"),
    "config-not-json": (lambda d, b: (d / "adapter_config.json").write_text("[") and d, AdapterError, "not valid JSON"),
}


@pytest.fixture
def seeded(library, make_brick):
    library.add(make_brick("keeper"))
    return library


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_brick_dir_is_refused_and_library_unchanged(case, seeded, make_brick, base):
    corrupt, exc_type, message = CASES[case]
    src = make_brick("newcomer")
    corrupt(src, base)
    before = snapshot(seeded.root)
    with pytest.raises(exc_type, match=message):
        import_brick(seeded, src)
    assert snapshot(seeded.root) == before
    assert seeded.names() == ["keeper"]


ARCHIVES = {
    "traversal": [("../../escape.txt", b"x", None)],
    "absolute": [("/tmp/brickwork-evil.txt", b"x", None)],
    "symlink-out": [("b/link", None, "/etc/passwd")],
}


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_unsafe_archive_is_refused(case, seeded, tmp_path):
    arch = _archive(tmp_path, ARCHIVES[case])
    before = snapshot(seeded.root)
    with pytest.raises(LibraryError, match="unsafe archive"):
        import_brick(seeded, arch)
    assert snapshot(seeded.root) == before
    assert not (tmp_path.parent / "escape.txt").exists()
    assert not Path("/tmp/brickwork-evil.txt").exists()


def test_not_an_archive(seeded, tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"definitely not gzip")
    with pytest.raises(LibraryError, match="not a readable brick archive"):
        import_brick(seeded, junk)


@pytest.mark.parametrize("name", ["", "UPPER", "has space", "../up", "a/b", "-lead", "x" * 65, ".hidden"])
def test_invalid_names(name, seeded, base, tmp_path):
    with pytest.raises(InvalidBrickName):
        seeded.get(name)
    src = write_lora_adapter(tmp_path / "plain", base)
    with pytest.raises(InvalidBrickName):
        import_brick(seeded, src, name=name, description="d")


def test_unknown_brick_lists_what_exists(seeded):
    with pytest.raises(BrickNotFound, match="the library has: keeper"):
        seeded.rollback("nope", to=1)


def test_bare_peft_dir_needs_name_and_description(seeded, base, tmp_path):
    src = write_lora_adapter(tmp_path / "plain", base)
    with pytest.raises(ManifestError, match="--name and --description"):
        import_brick(seeded, src)
    brick = import_brick(seeded, src, name="plain", description="a plain PEFT adapter")
    assert brick.manifest.base_model == base.to_json() and brick.manifest.rank == 8


@pytest.mark.parametrize("stage", ["copy", "validate", "publish", "activate"])
def test_interrupted_write_leaves_previous_state(stage, seeded, make_brick, monkeypatch):
    """A crash at any point of `add` (simulated by an exception) leaves the library as it was."""
    import brickwork.bricks.store as store_mod

    targets = {
        "copy": (store_mod.shutil, "copy2"),
        "validate": (store_mod, "validate_brick_dir"),
        "publish": (store_mod._atomic, "publish_dir"),
    }
    src = make_brick("keeper")  # a second version of an existing brick
    before = snapshot(seeded.root)

    class Crash(BaseException):
        pass

    def boom(*a, **k):
        raise Crash()

    if stage == "activate":
        real = store_mod._atomic.write_json

        def crash_on_active(path, text):
            if Path(path).name == "state.json":
                raise Crash()
            return real(path, text)

        monkeypatch.setattr(store_mod._atomic, "write_json", crash_on_active)
    else:
        monkeypatch.setattr(*targets[stage], boom)
    with pytest.raises(Crash):
        seeded.add(src)
    monkeypatch.undo()
    # The active version and its files are untouched; an orphan version dir, if published,
    # is never active and is not visible as the brick.
    assert seeded.active_version("keeper") == 1
    after = snapshot(seeded.root)
    assert {k: v for k, v in after.items() if "/versions/2/" not in k} == before
    assert seeded.get("keeper").version == 1


def test_errors_are_brickwork_errors():
    for exc in (ManifestError, AdapterError, BaseModelMismatch, LibraryError, BrickNotFound):
        assert issubclass(exc, BrickworkError)


def test_orphan_version_from_a_crash_is_invisible_and_swept(seeded, make_brick, monkeypatch):
    import brickwork.bricks.store as store_mod

    monkeypatch.setattr(store_mod.BrickStore, "_write_state", staticmethod(lambda *a: (_ for _ in ()).throw(OSError("disk gone"))))
    with pytest.raises(OSError):
        seeded.add(make_brick("keeper"))
    monkeypatch.undo()
    assert seeded.versions("keeper") == [1]
    brick = seeded.add(make_brick("keeper"))
    assert brick.version == 2 and seeded.versions("keeper") == [1, 2]
