"""The embedded engine: transformers + PEFT in this process (the default; needs no server).

Requests with different adapters in one `generate` call run as one mixed-adapter batch (PEFT's
``adapter_names``, ``"__base__"`` for the bare model). Adapters stay loaded in an LRU of
`max_loaded_adapters`; the adapters of the batch being run are never evicted.
``adapter_batching="switch"`` instead runs each adapter's requests after `set_adapter`, the way
a single-adapter server would (the benchmark's one-at-a-time baseline).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from brickwork.bricks.store import BrickStore
from brickwork.errors import AdapterError, ConfigError
from brickwork.serving.adapters import Adapter, AdapterResolver, AdapterSource
from brickwork.serving.composite import CompositeCache
from brickwork._checks import positive_int
from brickwork.serving.engine import (
    Completion,
    EngineBase,
    PromptScore,
    Request,
    SamplingParams,
    ScoreRequest,
    build_options,
)
from brickwork.serving.hf_decode import Decoded, GrammarCache, generate_with
from brickwork.serving.hf_generate import BASE_ADAPTER


@dataclass(frozen=True, kw_only=True)
class PeftOptions:
    """Options of the ``peft`` engine (``create_engine("peft", store, **options)``).

    `num_threads` sets torch's intra-op threads while this engine generates (torch's setting is
    process-wide; it is restored after each batch). On a CPU shared with other busy processes,
    1 thread can be many times faster than several spinning OpenMP threads.

    `ffn` runs each FFN with, per token, about that share of its neurons (thresholds on
    |act(gate_proj(x)) * up_proj(x)|, calibrated on the base model when the engine starts; see
    `brickwork.bricks.emergent.sparse_ffn`); None or 1 is the dense model.

    `adapter_sources` are where bricks outside the library come from (e.g. the bundled planner
    brick), asked in order after the store; the same option on every engine (`serving.adapters`).
    """

    batch_size: int = 16
    max_loaded_adapters: int = 16
    max_lora_rank: int | None = None
    adapter_batching: Literal["mixed", "switch"] = "mixed"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    num_threads: int | None = None
    composite_cache: CompositeCache | None = None
    adapter_sources: tuple[AdapterSource, ...] = ()
    ffn: float | None = None

    def __post_init__(self) -> None:
        if self.ffn is not None:
            from brickwork.bricks.emergent.sparse_ffn import check_fraction

            object.__setattr__(self, "ffn", check_fraction(self.ffn))
        positive_int("batch_size", self.batch_size)
        positive_int("num_threads", self.num_threads, allow_none=True)
        positive_int("max_loaded_adapters", self.max_loaded_adapters)
        positive_int("max_lora_rank", self.max_lora_rank, allow_none=True)
        if self.adapter_batching not in ("mixed", "switch"):
            raise ConfigError(f"`adapter_batching` should be 'mixed' or 'switch', got {self.adapter_batching!r}.")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"`dtype` should be 'float32', 'bfloat16' or 'float16', got {self.dtype!r}.")


class PeftEngine(EngineBase):
    """transformers + PEFT in process. See `PeftOptions` for the options."""

    name = "peft"

    def __init__(self, store: BrickStore, **options: Any) -> None:
        from brickwork.models import load_base_model

        self.options: PeftOptions = build_options(PeftOptions, self.name, options)
        self.store = store
        self.resolver = AdapterResolver(
            store, max_rank=self.options.max_lora_rank, cache=self.options.composite_cache, sources=self.options.adapter_sources
        )
        self._model, self._tok = load_base_model(store.base, dtype=self.options.dtype)
        self._sparse = self._sparsify(self.options.ffn)
        self._peft: Any = None  # a PeftModel around _model once the first adapter is loaded
        self._loaded: OrderedDict[str, Adapter] = OrderedDict()
        self._lock = threading.Lock()
        self._grammars: Any = None

    def _sparsify(self, ffn: float | None) -> Any:
        """Install per-token FFN selection on the base model (before any adapter is loaded, so
        the thresholds are the base model's; PEFT then wraps the same projections)."""
        if ffn is None or ffn >= 1:
            return None
        from brickwork.bricks.emergent.sparse_ffn import calibrate_thresholds, sparse_ffn

        with self._threads():
            thresholds = calibrate_thresholds(self._model, self._tok, [ffn], score="act")[ffn]
        return sparse_ffn(self._model, thresholds, fraction=ffn, score="act")

    @property
    def trace_name(self) -> str:
        """The engine as a run's trace names it: ``peft``, or ``peft ffn=0.5`` with sparse FFNs."""
        return self.name if self._sparse is None else f"{self.name} ffn={self.options.ffn:g}"

    @property
    def tokenizer(self) -> Any:
        """The base model's transformers tokenizer."""
        return self._tok

    def base_model(self) -> Any:
        """The transformers base model with no adapter applied, for in-process tools that apply
        PEFT adapters to it themselves and remove them after (merging, `merge_adapters(model=)`),
        so they need no second copy. This engine's adapters are unloaded; they load again on
        next use. Call it only while no request runs on this engine."""
        with self._lock:
            self._check_batch(())
            if self._peft is not None:
                from brickwork.bricks.lineage import strip_adapters

                strip_adapters(self._model)
                self._peft = None
                self._loaded.clear()
            return self._model

    # -- adapters ------------------------------------------------------------------------------
    @property
    def loaded_adapters(self) -> list[str]:
        """Names of the adapters held in memory, least recently used first."""
        return list(self._loaded)

    def _load(self, adapter: Adapter) -> None:
        from peft import PeftModel

        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(
                    self._model, str(adapter.path), adapter_name=adapter.name, is_trainable=False
                )
                self._peft.eval()
            else:
                self._peft.load_adapter(str(adapter.path), adapter_name=adapter.name, is_trainable=False)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise AdapterError(f"PEFT could not load adapter {adapter.name} from {adapter.path}: {exc}") from exc

    def _ensure_loaded(self, adapters: Sequence[Adapter | None]) -> None:
        needed = {a.name: a for a in adapters if a is not None}
        for name, adapter in needed.items():
            if name in self._loaded:
                self._loaded.move_to_end(name)
            else:
                self._load(adapter)  # load (and validate) before evicting anything
                self._loaded[name] = adapter
        for name in list(self._loaded):
            if len(self._loaded) <= self.options.max_loaded_adapters:
                break
            if name not in needed:
                self._peft.delete_adapter(name)
                del self._loaded[name]

    # -- generation ----------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        reqs = self._check_batch(requests)
        if not reqs:
            return []
        with self._lock:
            self._check_batch(())  # closed while waiting for the lock?
            names = self._adapter_names(reqs)
            groups: dict[tuple[Any, ...], list[int]] = {}
            for i, r in enumerate(reqs):
                groups.setdefault(r.sampling.key(), []).append(i)
            out: list[Completion | None] = [None] * len(reqs)
            with self._threads():
                for idx in groups.values():
                    sampling = reqs[idx[0]].sampling
                    sub = [reqs[i] for i in idx]
                    for i, d in zip(idx, self._run(sub, [names[i] for i in idx], sampling), strict=True):
                        out[i] = Completion(text=d.text, n_tokens=d.n_tokens, finish_reason=d.finish_reason, logprobs=d.logprobs)
        return [c for c in out if c is not None]

    def score(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        """Prompt log-probabilities under each request's bricks: one forward pass per batch."""
        from brickwork.serving.hf_decode import score_prompts

        reqs = self._check_batch(requests, ScoreRequest)
        if not reqs:
            return []
        with self._lock:
            self._check_batch((), ScoreRequest)
            names = self._adapter_names([r.as_request() for r in reqs])
            model = self._peft if self._peft is not None else self._model
            with self._threads():
                return score_prompts(
                    model,
                    self._tok,
                    [r.prompt for r in reqs],
                    top_logprobs=[r.top_logprobs for r in reqs],
                    batch_size=self.options.batch_size,
                    adapter_names=names if self._peft is not None else None,
                )

    def _adapter_names(self, reqs: Sequence[Request]) -> list[str]:
        adapters = self.resolver.resolve_batch(reqs)
        self._ensure_loaded(adapters)
        return [a.name if a is not None else BASE_ADAPTER for a in adapters]

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.options.num_threads is None:
            yield
            return
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.options.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _run(self, reqs: list[Request], names: list[str], sampling: SamplingParams) -> list[Decoded]:
        if self.options.adapter_batching == "mixed" or self._peft is None:
            model = self._peft if self._peft is not None else self._model
            return self._decode(model, reqs, names if self._peft is not None else None, sampling)
        # "switch": one adapter at a time, as a single-adapter server would run them
        results: list[Decoded | None] = [None] * len(reqs)
        by_name: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            by_name.setdefault(n, []).append(i)
        for name, idx in by_name.items():
            sub = [reqs[i] for i in idx]
            if name == BASE_ADAPTER:
                with self._peft.disable_adapter():
                    res = self._decode(self._peft, sub, None, sampling)
            else:
                self._peft.set_adapter(name)
                res = self._decode(self._peft, sub, None, sampling)
            for i, r in zip(idx, res, strict=True):
                results[i] = r
        return [r for r in results if r is not None]

    def _decode(self, model: Any, reqs: list[Request], names: list[str] | None, sampling: SamplingParams) -> list[Decoded]:
        if sampling.json_schema is not None and self._grammars is None:
            self._grammars = GrammarCache(self._tok, int(self._model.config.vocab_size))
        hooks = [r.on_text for r in reqs]
        return generate_with(
            model,
            self._tok,
            [r.prompt for r in reqs],
            sampling,
            batch_size=self.options.batch_size,
            adapter_names=names,
            grammars=self._grammars,
            on_text=hooks if any(h is not None for h in hooks) else None,
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._peft = self._model = None
            self._loaded.clear()
            import gc

            gc.collect()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._loaded)} adapters loaded"
        return f"<PeftEngine {state}>"


__all__ = ["PeftEngine", "PeftOptions"]
