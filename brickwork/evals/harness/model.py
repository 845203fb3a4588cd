"""``brickwork``: a brick library as an lm-evaluation-harness model (`BrickworkLM`).

    python -m brickwork.evals.harness --model brickwork \\
        --model_args library=~/.brickwork,engine=peft,bricks=routed --tasks ... --apply_chat_template

`bricks` picks the configuration: ``routed`` (each request goes to the bricks the library's
router picks for it, the context being the query; the choices are recorded), ``base`` (the base
model alone) or a fixed composite ``a:0.5+b:0.5``. Every request goes through the engine seam, so
the same model runs on ``peft``, ``vllm`` and ``vllm-server``:

- `loglikelihood`: `Engine.score` on context + continuation token ids (tokenized as lm-eval's
  `TemplateLM` does); the continuation's logprobs are summed, and it is greedy when each of its
  tokens is the most likely one at its place (``top_logprobs=1``).
- `loglikelihood_rolling`: lm-eval's disjoint rolling windows of `max_length` tokens, each scored
  the same way.
- `generate_until`: `Engine.generate` with `until` and the base model's end of turn as stop
  strings, `max_gen_toks`, and temperature / top_p when the task samples (``do_sample``).

Importing this module registers the model in lm-eval's registry (lm-eval 0.4.13 discovers no
external models by itself; see `brickwork.evals.harness`).
"""

from __future__ import annotations

import atexit
import collections
from collections.abc import Sequence
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from brickwork.errors import ConfigError
from brickwork.evals.harness.chat import render_chat, template_source
from brickwork.evals.harness.options import HarnessOptions
from brickwork.serving.engine import BrickRef, Request, SamplingParams, ScoreRequest

# A continuation token is greedy when its logprob is the top one, up to float noise across engines.
GREEDY_TOL = 1e-5
_LM_EVAL_ARGS = frozenset({"device", "max_batch_size"})

Config = tuple[BrickRef, ...]


@register_model("brickwork")
class BrickworkLM(TemplateLM):
    """An lm-eval model over a Brickwork library. Keyword arguments are `HarnessOptions`.

    From Python, `brickwork` (an open `Brickwork`, whose store, engine and retriever are used and
    left open), `tokenizer` and `prompts` (a `brickwork.prompts.PromptFormat`) may be passed
    instead of being built from `library`.
    """

    def __init__(self, *, brickwork: Any = None, tokenizer: Any = None, prompts: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.options, rest = HarnessOptions.from_kwargs(kwargs)
        unknown = sorted(set(rest) - _LM_EVAL_ARGS)
        if unknown:
            valid = sorted({f for f in HarnessOptions.__dataclass_fields__})
            raise ConfigError(f"unknown model_args {unknown} for model 'brickwork'; valid: {', '.join(valid)}")
        self._owned = None
        if brickwork is None:
            from brickwork.orchestrator.sdk import Brickwork

            brickwork = Brickwork(
                self.options.library,
                engine=self.options.engine,
                planner="rules",
                checkpoints=False,
                k=self.options.k,
                base=self.options.base,
            )
            self._owned = brickwork
            atexit.register(self.close)  # lm-eval never closes a model; a launched vLLM server must stop
        self.bw = brickwork
        self.store = brickwork.store
        self.engine = brickwork.engine
        self.retriever = brickwork.retriever
        self.fixed: Config | None = None
        if self.options.bricks == "base":
            self.fixed = ()
        elif self.options.bricks != "routed":
            from brickwork.serving.refs import brick_refs

            self.fixed = brick_refs(self.store, self.options.specs)
        self.tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(self.store)
        self.prompts = prompts if prompts is not None else self.store.prompts  # chat template, end of turn
        self.chat_queries: dict[str, str] = {}  # a rendered chat prompt -> its routing query (`chat_query`)
        self.routes: dict[str, Config] = {}  # routing query -> the bricks it was routed to
        self.route_counts: collections.Counter[str] = collections.Counter()

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None) -> BrickworkLM:
        """`--model_args` win over lm-eval's own flags (``batch_size=8`` in the model args and the
        command line's default ``--batch_size 1`` would otherwise collide)."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None) -> BrickworkLM:
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**(extra | dict(arg_dict)))

    # -- what lm-eval asks of a model -----------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def prefix_token_id(self) -> int:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return int(bos) if bos is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        return self.options.max_length

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "brickwork")).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return template_source(self.prompts, self.tokenizer) if chat_template else ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        text = render_chat(self.prompts, chat_history, add_generation_prompt=add_generation_prompt)
        query = chat_query(chat_history)
        if query:
            self.chat_queries[text] = query
        return text

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return list(self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens)))

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens)))

    def get_model_info(self) -> dict[str, Any]:
        """Added to lm-eval's results ``config``: the configuration and, when routed, where requests went."""
        info: dict[str, Any] = {"brickwork_bricks": self.options.bricks, "brickwork_engine": self.engine.name}
        if self.fixed is not None:
            info["brickwork_config"] = [str(b) for b in self.fixed]
        if self.route_counts:
            info["brickwork_routes"] = dict(self.route_counts.most_common())
        return info

    def close(self) -> None:
        """Close the Brickwork this model opened (an engine passed in stays open)."""
        if self._owned is not None:
            owned, self._owned = self._owned, None
            owned.close()

    # -- loglikelihood --------------------------------------------------------------------------
    def _loglikelihood_tokens(
        self, requests: list[tuple[tuple[str, str], list[int], list[int]]], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        jobs = [(ctx + cont, len(cont)) for _, ctx, cont in requests]
        configs = self._configs([c for (c, _), _, _ in requests])
        sums = self._score_sums(jobs, configs, desc="brickwork loglikelihood", disable=disable_tqdm)
        for (args, _, _), res in zip(requests, sums, strict=True):
            self.cache_hook.add_partial("loglikelihood", args, res)
        return sums

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        jobs: list[tuple[list[int], int]] = []
        owners: list[int] = []
        texts = [req.args[0] for req in requests]
        doc_configs = self._configs(texts)
        configs: list[Config] = []
        for n, text in enumerate(texts):
            windows = get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1
            )
            for ctx, pred in map(make_disjoint_window, windows):
                jobs.append((list(ctx) + list(pred), len(pred)))
                owners.append(n)
                configs.append(doc_configs[n])
        sums = self._score_sums(jobs, configs, desc="brickwork loglikelihood_rolling", disable=disable_tqdm)
        totals = [0.0] * len(texts)
        for n, (lp, _) in zip(owners, sums, strict=True):
            totals[n] += lp
        for text, total in zip(texts, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return totals

    def _score_sums(
        self, jobs: list[tuple[list[int], int]], configs: list[Config], *, desc: str, disable: bool
    ) -> list[tuple[float, bool]]:
        """(token ids, n) -> (sum of the last n tokens' logprobs, whether each was the argmax)."""
        reqs = []
        for ids, n in jobs:
            ids = ids[-(self.max_length + 1) :]  # the first token is context only, never predicted
            reqs.append(ScoreRequest(prompt=tuple(ids), bricks=configs[len(reqs)], top_logprobs=1))
        scores = self._batched(self.engine.score, reqs, desc=desc, disable=disable)
        out = []
        for (ids, n), s in zip(jobs, scores, strict=True):
            n = min(n, len(s.logprobs) - 1)
            if n <= 0:
                out.append((0.0, True))
                continue
            lps = [float(lp) for lp in s.logprobs[-n:] if lp is not None]
            tops = s.top[-n:] if s.top else ()
            greedy = len(tops) == n and all(t and lp >= t[0][1] - GREEDY_TOL for lp, t in zip(lps, tops, strict=True))
            out.append((sum(lps), bool(greedy)))
        return out

    # -- generation -----------------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        eos = self.tok_decode([self.eot_token_id])
        contexts = [req.args[0] for req in requests]
        configs = self._configs(contexts)
        reqs = []
        for context, gen_kwargs, config in zip(contexts, [r.args[1] for r in requests], configs, strict=True):
            reqs.append(Request(prompt=self._gen_prompt(context, gen_kwargs), bricks=config, sampling=self._sampling(gen_kwargs, eos)))
        outs = self._batched(self.engine.generate, reqs, desc="brickwork generate_until", disable=disable_tqdm)
        texts = [o.text for o in outs]
        for req, text in zip(requests, texts, strict=True):
            self.cache_hook.add_partial("generate_until", req.args, text)
        return texts

    def _sampling(self, gen_kwargs: dict[str, Any], eos: str) -> SamplingParams:
        kw = normalize_gen_kwargs(dict(gen_kwargs or {}), self.options.max_gen_toks)
        until = handle_stop_sequences(kw.pop("until", None), eos=eos)
        stops = tuple(dict.fromkeys([*(u for u in until if u), self.prompts.stop]))
        sample = bool(kw.get("do_sample")) and float(kw.get("temperature") or 0) > 0
        seed = kw.get("seed")
        return SamplingParams(
            max_tokens=int(kw["max_gen_toks"]),
            temperature=float(kw["temperature"]) if sample else 0.0,
            top_p=float(kw.get("top_p") or 1.0) if sample else 1.0,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            stop=stops,
        )

    def _gen_prompt(self, context: str, gen_kwargs: dict[str, Any]) -> str | tuple[int, ...]:
        """The context as text, or as its last token ids when it leaves no room to generate."""
        if not context:
            return (self.prefix_token_id,)
        room = self.max_length - int(normalize_gen_kwargs(dict(gen_kwargs or {}), self.options.max_gen_toks)["max_gen_toks"])
        ids = self.tok_encode(context)
        if len(ids) > max(1, room):
            return tuple(ids[-max(1, room) :])
        return context

    # -- routing and batching -------------------------------------------------------------------
    def _configs(self, contexts: Sequence[str]) -> list[Config]:
        """Each context's bricks (`route`), counted in `route_counts`."""
        configs = self.route(contexts)
        self.route_counts.update(config_name(c) for c in configs)
        return configs

    def route(self, contexts: Sequence[str]) -> list[Config]:
        """Each context's bricks: the fixed configuration, or the router's choice for its query
        (a chat prompt's `chat_query`, else the whole context), routed once per query.
        Not counted: the suite uses it to tell which bricks each evaluated item went to."""
        if self.fixed is not None:
            return [self.fixed] * len(contexts)
        queries = [self.chat_queries.get(c) or self.prompts.user_message(c) or c.strip() or c or " " for c in contexts]
        new = list(dict.fromkeys(q for q in queries if q not in self.routes))
        if new:
            for q, choices in zip(new, self.retriever.route(new), strict=True):
                self.routes[q] = tuple(BrickRef(name=b.name, version=b.version, weight=b.weight) for b in choices)
        return [self.routes[q] for q in queries]

    def _batched(self, call: Any, reqs: list[Any], *, desc: str, disable: bool) -> list[Any]:
        """Send `reqs` in engine batches of `batch_size`, longest prompts first (less padding), with
        a progress bar over requests; results in input order."""
        from tqdm.auto import tqdm

        order = sorted(range(len(reqs)), key=lambda i: -_length(reqs[i].prompt))
        out: list[Any] = [None] * len(reqs)
        size = self.options.batch_size
        with tqdm(total=len(reqs), desc=desc, unit="req", disable=disable or not reqs) as bar:
            for start in range(0, len(order), size):
                idx = order[start : start + size]
                for i, res in zip(idx, call([reqs[i] for i in idx]), strict=True):
                    out[i] = res
                bar.update(len(idx))
        return out


def chat_query(messages: Sequence[dict[str, str]]) -> str:
    """What a chat prompt is routed on: its system message, where it has one, then its last user
    message. lm-eval puts a task's ``description`` (and ``--system_instruction``) in the system
    turn, so there it is the request's instruction ("Evaluate the result of a random Boolean
    expression.") and the user turn only its input ("Q: not ( True ) and ( True ) is"); routing the
    input alone would choose a brick for a task nobody asked it ("the context is the query").
    "" when the chat has no user message."""
    users = [m["content"].strip() for m in messages if m["role"] == "user" and m["content"].strip()]
    if not users:
        return ""
    system = " ".join(m["content"].strip() for m in messages if m["role"] == "system" and m["content"].strip())
    return f"{system}\n\n{users[-1]}" if system else users[-1]


def config_name(config: Config) -> str:
    """``a@1:1+b@2:0.5``, or ``base`` for no bricks."""
    return "+".join(str(b) for b in config) or "base"


def _length(prompt: str | tuple[int, ...]) -> int:
    return len(prompt) if isinstance(prompt, tuple) else len(prompt) // 4


def _load_tokenizer(store: Any) -> Any:
    from transformers import AutoTokenizer

    from brickwork.errors import ModelError

    try:
        return AutoTokenizer.from_pretrained(store.base.path)
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"cannot load the base model's tokenizer for the harness: {exc}") from exc
