"""Partner bricks: other bricks' LoRA deltas, frozen, active beside the brick being trained.

A brick is not always alone: a ``cat`` merge sums its delta with another brick's, and a composed
step runs several at once. Anchors trained at the base model's states teach a brick to leave other
tasks alone *there*; on another task's request with that task's own brick active (the state it
meets inside a merge), it was never trained, and the two deltas together can flip answers neither
flips alone (sentiment + spam merged turned 42 of 200 correct "negative" answers "positive").

So an anchor may name a *partner*: the brick of the task the anchor request belongs to. Its delta
is added (frozen, per sequence) while the new brick trains on that request, and the target is the
partner's own answer: the new brick learns to stay out of the way where it will actually be summed.

Example::

    with PartnerDeltas(peft_model.base_model.model, [Path("lib/bricks/sms_spam/v1")]) as deltas:
        with deltas.rows([0, -1, 0]):        # rows 0 and 2 of the batch carry partner 0; row 1 none
            out = model(...)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brickwork.errors import AdapterError, ManifestError

#: the partner slot of a sequence that has none
NO_PARTNER = -1


def partner_identity(path: Path) -> tuple[str, int | None]:
    """(brick name, version) of the partner at `path`, from its brick.json; (directory name, None)
    for an adapter directory without a valid one."""
    from brickwork.bricks.manifest import Manifest

    try:
        m = Manifest.load(Path(path))
    except ManifestError:
        return Path(path).name, None
    return m.name, m.version


class PartnerDeltas:
    """Forward hooks that add frozen LoRA deltas, each to the batch rows its slot is assigned to.

    `model` is the transformers model the adapters' module paths are relative to (for a PEFT model
    in training: ``peft_model.base_model.model``); a module wrapped by PEFT gets the hook on its
    frozen ``base_layer``, so the delta adds to the base output exactly as a second adapter would.
    """

    def __init__(self, model: Any, adapter_dirs: Sequence[Path]) -> None:
        import torch

        from brickwork.bricks.merging import read_lora

        self.n = len(adapter_dirs)
        self._rows: list[tuple[int, Any]] = []
        self._handles: list[Any] = []
        per_module: dict[str, list[tuple[int, Any, Any]]] = {}
        for slot, path in enumerate(adapter_dirs):
            _, mods = read_lora(Path(path))
            for module, (a, b) in mods.items():
                per_module.setdefault(module, []).append((slot, a, b))
        dtype = next(model.parameters()).dtype
        try:
            for module, factors in sorted(per_module.items()):
                try:
                    target = model.get_submodule(module)
                except AttributeError:
                    raise AdapterError(f"partner adapter module {module!r} is not in the base model") from None
                target = getattr(target, "base_layer", target)
                if not isinstance(target, torch.nn.Linear):
                    raise AdapterError(f"partner adapter module {module!r} is not a linear layer")
                for slot, a, b in factors:
                    if a.shape[1] != target.in_features or b.shape[0] != target.out_features:
                        raise AdapterError(
                            f"partner adapter {adapter_dirs[slot]}: module {module!r} has factors "
                            f"{tuple(a.shape)} x {tuple(b.shape)}, the base layer is {target.in_features} -> "
                            f"{target.out_features} (an adapter for another base model?)")
                table = {slot: (a.to(dtype), b.to(dtype)) for slot, a, b in factors}
                self._handles.append(target.register_forward_hook(self._hook(table)))
        except Exception:
            self.close()
            raise

    def _hook(self, table: dict[int, tuple[Any, Any]]) -> Any:
        def add_delta(_module: Any, args: tuple[Any, ...], out: Any) -> Any:
            x = args[0]
            for slot, rows in self._rows:
                if slot in table:
                    a, b = table[slot]
                    out = out.index_add(0, rows, (x.index_select(0, rows) @ a.T) @ b.T)
            return out

        return add_delta

    @contextmanager
    def rows(self, slots: Sequence[int]) -> Iterator[None]:
        """Within the block, batch row r carries partner `slots[r]` (`NO_PARTNER`: none)."""
        import torch

        bad = [s for s in slots if s != NO_PARTNER and not 0 <= s < self.n]
        if bad:
            raise ValueError(f"partner slots {bad} out of range (have {self.n})")
        groups: dict[int, list[int]] = {}
        for r, s in enumerate(slots):
            if s != NO_PARTNER:
                groups.setdefault(s, []).append(r)
        self._rows = [(s, torch.tensor(rs, dtype=torch.long)) for s, rs in sorted(groups.items())]
        try:
            yield
        finally:
            self._rows = []

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> PartnerDeltas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
