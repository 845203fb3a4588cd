"""LoRA training of bricks on CPU: fast enough that a ~500-example brick takes minutes.

What makes it fast on 2 cores (each cut measured in docs/training.md):

* **LoRA only on the upper layers** (PEFT ``layers_to_transform``): the layers below carry no
  trainable weights, so backpropagation stops at the first LoRA layer.
* **The frozen lower layers run once per sequence.** Their output depends only on the tokens, so
  it is computed without autograd the first time a sequence is drawn and reused on every later
  draw; a training step then runs only the upper layers.
* **The 49k-vocabulary head only where there are labels**: the decoder body returns hidden
  states, those at answer positions are gathered, and only they go through ``lm_head``.
* **Loss only on the answer tokens** (the answer plus the end-of-turn token); batches are padded
  to the longest sequence in the batch; prompts have a short system message.

A pair is ``(user text, answer)``: the prompt is the base model's chat template over it
(``base.prompts.render(user_text)``: SmolLM2's ChatML by default), the target is
``answer + base.prompts.stop`` (``<|im_end|>`` for SmolLM2). The adapter is written in PEFT's format (safetensors only; bias none,
no DoRA, no ``modules_to_save``), so PEFT and vLLM load it as is.

Example::

    cfg = TrainConfig(steps=120, seed=0)
    res = train_lora([("Give the plural form of the given English noun.\\nmouse", "mice"), ...],
                     base=resolve_base_model(), config=cfg, out_dir=Path("out"))
    evaluate_adapter(base, res.adapter_dir, [(query, example), ...])["exact_match"]
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork._checks import non_negative_int, positive_int
from brickwork.bricks.partners import NO_PARTNER, PartnerDeltas, partner_identity
from brickwork.errors import ConfigError, TrainingError
from brickwork.models import BaseModel
from brickwork.prompts import CHATML, PromptFormat
from brickwork.tasks import Example, is_correct

if TYPE_CHECKING:
    from brickwork.bricks.lineage import BaseRunner
    from brickwork.bricks.store import Brick, BrickStore

ALL_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Measured (docs/training.md): for the same adapter size, LoRA on q,v,o,down of the top 12 layers
# learns far better than on all 7 projections of the top 6 (antonym 0.52 vs 0.30).
DEFAULT_MODULES: tuple[str, ...] = ("q_proj", "v_proj", "o_proj", "down_proj")
_VLLM_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_SAVE_DTYPES: tuple[str, ...] = ("float16", "float32", "bfloat16")
_COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
# Packed rows' width: wider rows leave less padding but attention grows with the square of the
# width; 64 was cheaper than 128 per step (antonym, 1 thread: 1.49 vs 1.62 CPU s; unpacked 1.80).
_PACK_WIDTH = 64


@dataclass(kw_only=True)
class TrainConfig:
    """How a LoRA brick is trained. Defaults are the starter library's settings.

    `top_layers`: LoRA on the top N decoder layers only (None: every layer). `cache_lower`: reuse
    the frozen lower layers' output across draws of the same sequence. `full_logits`: compute the
    head at every position (the slow, naive way; for benchmarks). `pack`: the sequences of a batch
    share rows, each attending only to itself, instead of each padded to the longest (exact).
    `compute_dtype`: ``bfloat16`` runs the step's matrix products under CPU autocast (weights,
    gradients and optimizer stay float32). `threads`: torch CPU threads (None: leave torch's setting).
    """

    rank: int = 8
    alpha: float = 16.0
    target_modules: tuple[str, ...] = DEFAULT_MODULES
    top_layers: int | None = 12
    steps: int = 120
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    seed: int = 0
    max_len: int = 128
    cache_lower: bool = True
    full_logits: bool = False
    pack: bool = True
    compute_dtype: str = "float32"
    threads: int | None = None
    save_dtype: str = "float16"

    def __post_init__(self) -> None:
        for name in ("rank", "steps", "batch_size", "max_len"):
            positive_int(name, getattr(self, name))
        if self.rank not in _VLLM_RANKS:
            raise ConfigError(f"`rank` should be one of {_VLLM_RANKS} (ranks vLLM accepts), got {self.rank!r}.")
        if not isinstance(self.alpha, int | float) or self.alpha <= 0:
            raise ConfigError(f"`alpha` should be positive, got {self.alpha!r}.")
        if isinstance(self.target_modules, str):
            self.target_modules = (self.target_modules,)
        self.target_modules = tuple(self.target_modules)
        bad = [m for m in self.target_modules if m not in ALL_MODULES]
        if not self.target_modules or bad:
            raise ConfigError(f"`target_modules` should be a non-empty subset of {ALL_MODULES}, got {self.target_modules!r}.")
        positive_int("top_layers", self.top_layers, allow_none=True)
        if not isinstance(self.lr, int | float) or not 0 < self.lr < 1:
            raise ConfigError(f"`lr` should be in (0, 1), got {self.lr!r}.")
        non_negative_int("warmup_steps", self.warmup_steps)
        if not isinstance(self.weight_decay, int | float) or self.weight_decay < 0:
            raise ConfigError(f"`weight_decay` should be non-negative, got {self.weight_decay!r}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"`seed` should be an integer, got {self.seed!r}.")
        positive_int("threads", self.threads, allow_none=True)
        if self.save_dtype not in _SAVE_DTYPES:
            raise ConfigError(f"`save_dtype` should be one of {_SAVE_DTYPES}, got {self.save_dtype!r}.")
        if self.compute_dtype not in _COMPUTE_DTYPES:
            raise ConfigError(f"`compute_dtype` should be one of {_COMPUTE_DTYPES}, got {self.compute_dtype!r}.")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What one training run produced and how long it took."""

    adapter_dir: Path
    steps: int
    seconds: float
    seconds_per_step: float
    cpu_seconds_per_step: float  # process CPU time: comparable across runs on a shared, busy CPU
    n_pairs: int
    n_trainable: int
    first_loss: float
    final_loss: float
    layers: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["adapter_dir"] = str(self.adapter_dir)
        return d


def data_hash(pairs: Sequence[Sequence[Any]]) -> str:
    """A stable hash of training pairs (recorded in provenance); a partner counts by its brick's name
    (its answers are in the pair already), so the same data in another library hashes the same."""
    h = hashlib.sha256()
    names: dict[Any, str] = {}  # each partner's brick.json is read once, not once per pair
    for q, a, *partner in pairs:
        for p in partner:
            if p is not None and p not in names:
                names[p] = partner_identity(Path(p))[0]
        row = [q, a] + [names[p] for p in partner if p is not None]
        h.update(json.dumps(row, ensure_ascii=False).encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()[:32]


def styled_pairs(
    examples: Sequence[Example] | Sequence[tuple[str, str]],
    instructions: Sequence[str],
    *,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """Two pairs per example: the bare input, and the input under one of `instructions`.

    A brick is reached both by an instruction-style subgoal ("Give the plural ... \\nmouse") and by
    a bare input routed to it ("mouse"), so it is trained on both. The instruction for each example
    is drawn (seeded) from `instructions`.
    """
    rng = random.Random(seed)
    instr = [i.strip() for i in instructions if i and i.strip()]
    out: list[tuple[str, str]] = []
    for e in examples:
        text, answer = (e.input, e.output) if isinstance(e, Example) else e
        out.append((text, answer))
        if instr:
            out.append((f"{rng.choice(instr)}\n{text}", answer))
    return out


# -- training ------------------------------------------------------------------------------


def _encode(tok: Any, pairs: Sequence[tuple[str, str]], max_len: int,
            slots: Sequence[int] | None = None, prompts: PromptFormat = CHATML) -> tuple[list[tuple[list[int], int]], list[int]]:
    """(token ids, prompt length) per pair, and each kept pair's partner slot; pairs longer than
    `max_len` are dropped."""
    out, kept = [], []
    for k, (q, a) in enumerate(pairs):
        p = tok(prompts.render(q), add_special_tokens=False)["input_ids"]
        t = tok(prompts.target(a), add_special_tokens=False)["input_ids"]
        if len(p) + len(t) <= max_len:
            out.append((p + t, len(p)))
            kept.append(slots[k] if slots is not None else NO_PARTNER)
    return out, kept


def _is_pair(p: Any) -> bool:
    return (isinstance(p, tuple | list) and len(p) in (2, 3) and isinstance(p[0], str) and isinstance(p[1], str)
            and (len(p) == 2 or p[2] is None or isinstance(p[2], str | Path)))


def _partner_slots(pairs: Sequence[Sequence[Any]]) -> tuple[list[Path], list[int]]:
    """The distinct partner adapters of `pairs` and each pair's slot in them (`NO_PARTNER`: none)."""
    dirs: list[Path] = []
    where: dict[Path, int] = {}
    slots = []
    for pair in pairs:
        p = pair[2] if len(pair) == 3 else None
        if p is None:
            slots.append(NO_PARTNER)
            continue
        p = Path(p).resolve()
        if p not in where:
            where[p] = len(dirs)
            dirs.append(p)
        slots.append(where[p])
    return dirs, slots


def _common_prefix_len(seqs: list[list[int]], *, limit: int) -> int:
    first = seqs[0]
    n = min(limit, len(first))
    for s in seqs[1:]:
        k = 0
        while k < n and k < len(s) and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def schedule(n: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """The batches of every step: seeded reshuffles of range(n), one epoch after another."""
    rng = random.Random(seed)
    order: list[int] = []
    batches = []
    for _ in range(steps):
        if len(order) < batch_size:
            epoch = list(range(n))
            rng.shuffle(epoch)
            order += epoch
        batches.append(order[:batch_size])
        order = order[batch_size:]
    return batches


def _lora_layers(n_layers: int, top: int | None) -> list[int]:
    if top is None or top >= n_layers:
        return list(range(n_layers))
    return list(range(n_layers - top, n_layers))


class _Trainer:
    """The training loop over one PEFT model; split from `train_lora` to keep each part short."""

    def __init__(self, model: Any, tok: Any, config: TrainConfig, layers: list[int], data: list[tuple[list[int], int]],
                 slots: list[int] | None = None, deltas: PartnerDeltas | None = None) -> None:
        import torch

        self.torch = torch
        self.cfg = config
        self.data = data
        self.slots = slots or [NO_PARTNER] * len(data)
        self.deltas = deltas
        self.causal = model.base_model.model  # LlamaForCausalLM-like: .model (decoder) + .lm_head
        self.decoder = getattr(self.causal, "model", None)
        if not hasattr(self.decoder, "layers") or not hasattr(self.causal, "lm_head"):
            raise TrainingError(
                f"unsupported base model architecture {type(self.causal).__name__}: training needs a "
                "decoder-only model with `.model.layers` and `.lm_head` (Llama, Mistral, Qwen, SmolLM, ...)"
            )
        self.all_layers = self.decoder.layers
        self.split = layers[0] if config.cache_lower else 0
        self.lower = torch.nn.ModuleList(list(self.all_layers)[: self.split])
        self.upper = torch.nn.ModuleList(list(self.all_layers)[self.split :])
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.cache: dict[int, Any] = {}
        # Every prompt starts with the same system turn: its lower-layer states are computed
        # once and reused as a KV prefix for every sequence (not with partners: their deltas change it).
        self.prefix_len = 0 if deltas else _common_prefix_len([s for s, _ in data], limit=min(p for _, p in data) - 1)
        self._prefix: tuple[Any, Any] | None = None

    def _batch(self, seqs: list[list[int]]) -> tuple[Any, Any]:
        torch = self.torch
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):  # right padding: real tokens keep positions 0..len-1
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        return ids, mask

    @contextmanager
    def _partners(self, idx: list[int]) -> Iterator[None]:
        """The partner deltas of the sequences `idx` (batch rows in that order) active for the block."""
        if self.deltas is None:
            yield
            return
        with self.deltas.rows([self.slots[i] for i in idx]):
            yield

    def _run_lower(self, **kwargs: Any) -> Any:
        """The decoder's lower (frozen) layers only, without the final norm, under no_grad."""
        norm = self.decoder.norm
        self.decoder.layers, self.decoder.norm = self.lower, self.torch.nn.Identity()
        try:
            with self.torch.no_grad():
                return self.decoder(**kwargs)
        finally:
            self.decoder.layers, self.decoder.norm = self.all_layers, norm

    def precompute(self, idx: list[int], *, progress: bool = False, chunk: int = 32) -> None:
        """Lower-layer states of the sequences in `idx`, in length-sorted batches (little padding)."""
        torch = self.torch
        todo = sorted({i for i in idx if i not in self.cache}, key=lambda i: len(self.data[i][0]))
        if not todo or self.split == 0:
            return
        P = self.prefix_len
        if P and self._prefix is None:
            out = self._run_lower(input_ids=torch.tensor([self.data[todo[0]][0][:P]]), use_cache=True)
            self._prefix = (out.last_hidden_state[0], out.past_key_values)
        bar = _progress(len(todo), progress, desc="lower layers")
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            ids, mask = self._batch([self.data[i][0][P:] for i in part])
            with self._partners(part):
                h = self._lower_chunk(ids, mask, len(part))
            for r, i in enumerate(part):
                own = h[r, : len(self.data[i][0]) - P]
                self.cache[i] = torch.cat([self._prefix[0], own]) if P else own.clone()  # type: ignore[index]
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()

    def _lower_chunk(self, ids: Any, mask: Any, n: int) -> Any:
        """The lower layers' output for one padded chunk of `n` sequences (after the shared prefix)."""
        import copy

        torch = self.torch
        P = self.prefix_len
        if not P:
            return self._run_lower(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        assert self._prefix is not None
        past = copy.deepcopy(self._prefix[1])
        past.batch_repeat_interleave(n)
        full_mask = torch.cat([torch.ones((n, P), dtype=mask.dtype), mask], dim=1)
        return self._run_lower(input_ids=ids, attention_mask=full_mask, past_key_values=past, use_cache=True).last_hidden_state

    def _lower_states(self, idx: list[int], data: list[tuple[list[int], int]]) -> list[Any]:
        """Hidden states entering the first LoRA layer, per sequence (computed once, cached)."""
        self.precompute(idx)
        return [self.cache[i] for i in idx]

    def _rows(self, idx: list[int], data: list[tuple[list[int], int]]) -> list[list[int]]:
        """Which sequences (positions in `idx`) share each input row: one each, or packed first-fit
        by decreasing length into rows of `_PACK_WIDTH` tokens (or the longest; partners need one per row)."""
        if not self.cfg.pack or self.deltas is not None:
            return [[r] for r in range(len(idx))]
        lens = [len(data[i][0]) for i in idx]
        width = max(max(lens), _PACK_WIDTH)
        rows: list[list[int]] = []
        room: list[int] = []
        for r in sorted(range(len(idx)), key=lambda r: -lens[r]):
            k = next((k for k, free in enumerate(room) if free >= lens[r]), None)
            if k is None:
                rows.append([r])
                room.append(width - lens[r])
            else:
                rows[k].append(r)
                room[k] -= lens[r]
        return rows

    def loss(self, idx: list[int], data: list[tuple[list[int], int]]) -> Any:
        torch = self.torch
        seqs = [data[i][0] for i in idx]
        layout = self._rows(idx, data)
        width = max(sum(len(seqs[r]) for r in row) for row in layout)
        # Each sequence's start (row, column); positions restart at 0 for every sequence, and the
        # padding after the last one is a sequence of its own, so no token attends across them.
        start: dict[int, tuple[int, int]] = {}
        pos = torch.zeros((len(layout), width), dtype=torch.long)
        for k, row in enumerate(layout):
            col = 0
            for r in row:
                start[r] = (k, col)
                pos[k, col : col + len(seqs[r])] = torch.arange(len(seqs[r]))
                col += len(seqs[r])
            pos[k, col:] = torch.arange(width - col)
        packed = any(len(row) > 1 for row in layout)
        # Positions whose next token is an answer token, and those tokens.
        rows, cols, targets = [], [], []
        for r, (s, plen) in enumerate(data[i] for i in idx):
            k, c0 = start[r]
            for p in range(plen - 1, len(s) - 1):
                rows.append(k)
                cols.append(c0 + p)
                targets.append(s[p + 1])
        rows_t, cols_t = torch.tensor(rows), torch.tensor(cols)
        target_t = torch.tensor(targets)
        # Packed rows get no mask: the decoder builds the per-sequence causal mask from the restarting
        # positions. Unpacked rows are right-padded and masked as before.
        mask = None
        if not packed:
            mask = torch.zeros((len(layout), width), dtype=torch.long)
            for r in range(len(idx)):
                mask[start[r][0], : len(seqs[r])] = 1
        dtype = torch.bfloat16 if self.cfg.compute_dtype == "bfloat16" else torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
            if self.split > 0:
                states = self._lower_states(idx, data)
                h0 = torch.zeros((len(layout), width, states[0].shape[-1]), dtype=states[0].dtype)
                for r, st in enumerate(states):
                    k, c0 = start[r]
                    h0[k, c0 : c0 + st.shape[0]] = st
                self.decoder.layers = self.upper
                try:
                    with self._partners(idx):
                        hidden = self.decoder(inputs_embeds=h0, attention_mask=mask, position_ids=pos,
                                              use_cache=False).last_hidden_state
                finally:
                    self.decoder.layers = self.all_layers
            else:
                ids = torch.full((len(layout), width), self.pad_id, dtype=torch.long)
                for r, s in enumerate(seqs):
                    k, c0 = start[r]
                    ids[k, c0 : c0 + len(s)] = torch.tensor(s, dtype=torch.long)
                with self._partners(idx):
                    hidden = self.decoder(input_ids=ids, attention_mask=mask, position_ids=pos,
                                          use_cache=False).last_hidden_state
            if self.cfg.full_logits:
                logits = self.causal.lm_head(hidden)[rows_t, cols_t]
            else:
                logits = self.causal.lm_head(hidden[rows_t, cols_t])
        return torch.nn.functional.cross_entropy(logits.float(), target_t)


def train_lora(
    pairs: list[tuple[str, str]],
    *,
    base: BaseModel,
    config: TrainConfig,
    out_dir: Path,
    progress: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on ``(user text, answer)`` pairs and write it to `out_dir` (PEFT format).

    A pair may carry a third element, the adapter directory of a *partner* brick whose delta is
    active, frozen, while the new brick trains on that pair (`bricks.partners`; anchors do this).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from brickwork.models import load_base_model

    if not pairs:
        raise TrainingError("no training pairs given")
    bad = [p for p in pairs if not _is_pair(p)]
    if bad:
        raise TrainingError(
            f"a training pair should be (user text, answer text[, partner adapter dir]), got {bad[0]!r}")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    partner_dirs, slots = _partner_slots(pairs)
    model, tok = load_base_model(base)
    data, kept_slots = _encode(tok, [(p[0], p[1]) for p in pairs], config.max_len, slots, base.prompts)
    if not data:
        raise TrainingError(f"every pair is longer than `max_len` ({config.max_len} tokens)")
    n_layers = model.config.num_hidden_layers
    layers = _lora_layers(n_layers, config.top_layers)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=0.0,  # keeps the cached lower states exact and training deterministic
        target_modules=list(config.target_modules),
        layers_to_transform=layers if len(layers) < n_layers else None,
        bias="none",
        use_dora=False,
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model, lora)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"PEFT could not build the LoRA: {exc}") from exc
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    deltas = PartnerDeltas(peft_model.base_model.model, partner_dirs) if partner_dirs else None
    try:
        losses, seconds, cpu = _train_loop(peft_model, tok, config, layers, data, kept_slots, deltas, params, opt, sched,
                                           progress=progress)
    finally:
        if deltas is not None:
            deltas.close()
    _save(peft_model, Path(out_dir), config)
    head = losses[: min(10, len(losses))]
    tail = losses[-min(10, len(losses)) :]
    return TrainResult(
        adapter_dir=Path(out_dir),
        steps=config.steps,
        seconds=round(seconds, 2),
        seconds_per_step=round(seconds / config.steps, 4),
        cpu_seconds_per_step=round(cpu / config.steps, 4),
        n_pairs=len(data),
        n_trainable=n_trainable,
        first_loss=round(sum(head) / len(head), 4),
        final_loss=round(sum(tail) / len(tail), 4),
        layers=layers,
    )


def _train_loop(peft_model: Any, tok: Any, config: TrainConfig, layers: list[int], data: list[tuple[list[int], int]],
                slots: list[int], deltas: PartnerDeltas | None, params: list[Any], opt: Any, sched: Any,
                *, progress: bool) -> tuple[list[float], float, float]:
    """Run every step; return the losses, wall seconds and CPU seconds."""
    import torch

    trainer = _Trainer(peft_model, tok, config, layers, data, slots, deltas)
    batches = schedule(len(data), config.steps, config.batch_size, config.seed)
    losses: list[float] = []
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.precompute([i for b in batches for i in b], progress=progress)
    bar = _progress(config.steps, progress, desc="train")
    for _step, idx in enumerate(batches):
        loss = trainer.loss(idx, data)
        if not torch.isfinite(loss):
            raise TrainingError(f"training diverged (loss {loss.item()}) at step {_step}; lower `lr`")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if bar is not None:
        bar.close()
    return losses, seconds, cpu


def _save(peft_model: Any, out_dir: Path, config: TrainConfig) -> None:
    """Write adapter_config.json + adapter_model.safetensors (in `save_dtype`) and nothing else."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.peft_config["default"].save_pretrained(str(out_dir))
    cfg_path = out_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = None  # the manifest records the base model (and its fingerprint)
    cfg["inference_mode"] = True
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    state = get_peft_model_state_dict(peft_model)
    dtype = getattr(torch, config.save_dtype)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in state.items()}
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def _progress(total: int, enabled: bool, *, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)


# -- evaluation ----------------------------------------------------------------------------


def answer_budget(tok: Any, items: Sequence[tuple[str, Example]], *, margin: int = 8) -> int:
    """max_new_tokens for scoring: the longest accepted answer plus `margin` (a longer reply can't match)."""
    longest = max(len(tok(a, add_special_tokens=False)["input_ids"]) for _, e in items for a in e.accepted())
    return longest + margin


def evaluate_adapter(
    base: BaseModel,
    adapter_dir: Path | None,
    items: list[tuple[str, Example]],
    *,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    progress: bool = False,
    runner: BaseRunner | None = None,
) -> dict[str, Any]:
    """Exact match (``tasks.is_correct``) of base + adapter (or the base alone) on ``(user text, example)`` items.

    Returns ``{"exact_match", "n", "correct", "seconds", "outputs"}``; the prompt is
    ``base.prompts.render(user text)`` and decoding is greedy, on `runner`'s engine (a
    `lineage.BaseRunner`, shared to load the base model once; by default one is made and closed).
    """
    from brickwork.bricks.lineage import BaseRunner

    if not items:
        raise TrainingError("nothing to evaluate: no held-out items")
    own = runner is None
    runner = runner or BaseRunner(base, batch_size=batch_size)
    try:
        budget = max_new_tokens or answer_budget(runner.tok, items)
        t0 = time.perf_counter()
        outputs: list[str] = []
        chunk = batch_size * 4
        bar = _progress(len(items), progress, desc="eval")
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            outputs += runner.generate(adapter_dir, [q for q, _ in part], max_new_tokens=budget)
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()
    finally:
        if own:
            runner.close()
    correct = sum(is_correct(o, e) for o, (_, e) in zip(outputs, items, strict=True))
    return {
        "exact_match": round(correct / len(items), 4),
        "n": len(items),
        "correct": correct,
        "seconds": round(time.perf_counter() - t0, 2),
        "outputs": outputs,
    }


# -- bricks --------------------------------------------------------------------------------


def command_line() -> str:
    """The command that is running, for provenance."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("/brickwork", "__main__.py")):
        argv[0] = "brickwork"
    return shlex.join(argv)


def train_brick(
    store: BrickStore,
    name: str,
    *,
    train_pairs: list[tuple[str, str]],
    heldout: list[tuple[str, Example]],
    description: str,
    examples: list[str],
    tags: list[str],
    config: TrainConfig,
    routing_samples: list[str] | None = None,
    bare_inputs: bool = True,
    provenance: dict[str, Any] | None = None,
    eval_split: str = "heldout",
    extra_heldout: dict[str, list[tuple[str, Example]]] | None = None,
    data_files: dict[str, str] | None = None,
    base_metric: float | None = None,
    trained: TrainResult | None = None,
    progress: bool = True,
) -> Brick:
    """Train a brick, score it (and the base model zero-shot) on `heldout`, add it to `store`.

    The adapter is trained in a temporary directory; the manifest's `metrics` hold
    ``exact_match`` (brick), ``base_exact_match`` (base, same prompts), ``n_eval`` and
    ``eval_split``; `routing_samples` go to the manifest (the router's classifier learns from them);
    `provenance` gets the data hash, seed, config, command and seconds (keys
    given in `provenance` are kept). `extra_heldout` scores the brick on more item sets, recorded
    as ``exact_match_<key>``; `data_files` ({relative path: text}) are written into the brick
    directory (e.g. ``data/heldout.jsonl``). `base_metric` skips re-scoring the base. `trained`: an
    adapter already trained on `train_pairs` with `config` (a recipe search's winner) is used instead
    of training again. The brick and the base are scored on one engine (loaded once, after training).
    The store validates the brick and adds it atomically as the next version of `name`.
    """
    from brickwork.bricks.manifest import Manifest, check_name

    check_name(name)
    base = store.base
    with tempfile.TemporaryDirectory(prefix=f"brickwork-train-{name}-") as tmp:
        out = Path(tmp) / name
        if trained is None:
            res = train_lora(train_pairs, base=base, config=config, out_dir=out, progress=progress)
        else:
            copy_adapter(trained.adapter_dir, out)
            res = trained
        from brickwork.bricks.lineage import BaseRunner

        with BaseRunner(store) as scorer:
            brick_eval = evaluate_adapter(base, out, heldout, progress=progress, runner=scorer)
            extra = {
                f"exact_match_{key}": evaluate_adapter(base, out, items, progress=progress, runner=scorer)["exact_match"]
                for key, items in (extra_heldout or {}).items()
            }
            if base_metric is None:
                base_metric = evaluate_adapter(base, None, heldout, progress=progress, runner=scorer)["exact_match"]
        prov = {
            "data_hash": data_hash(train_pairs),
            "seed": config.seed,
            "config": config.to_json(),
            "command": command_line(),
            "seconds": res.seconds,
            "seconds_per_step": res.seconds_per_step,
            "cpu_seconds_per_step": res.cpu_seconds_per_step,
            "n_train_pairs": res.n_pairs,
            "final_loss": res.final_loss,
            "parents": [],
            **(provenance or {}),
        }
        manifest = Manifest(
            name=name,
            version=1,
            kind="lora",
            description=description,
            examples=list(examples),
            routing_samples=list(routing_samples or []),
            bare_inputs=bare_inputs,
            tags=list(tags),
            base_model=base.to_json(),
            rank=config.rank,
            target_modules=list(config.target_modules),
            provenance=prov,
            metrics={
                "exact_match": brick_eval["exact_match"],
                "base_exact_match": base_metric,
                "n_eval": brick_eval["n"],
                "eval_split": eval_split,
                **extra,
            },
        )
        for rel, text in (data_files or {}).items():
            dest = out / rel
            if dest.resolve().parent != out.resolve() and out.resolve() not in dest.resolve().parents:
                raise TrainingError(f"data file {rel!r} would land outside the brick directory")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
        return store.add(out, manifest)


def copy_adapter(src: Path, dst: Path) -> None:
    """Copy just the adapter files of a brick directory."""
    dst.mkdir(parents=True, exist_ok=True)
    for fname in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(src / fname, dst / fname)
