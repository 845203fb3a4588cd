"""Plan with any OpenAI-compatible chat endpoint (a larger model behind vLLM, a hosted API).

Asks for the plan under a JSON schema (``response_format`` ``json_schema``, which vLLM's server
enforces), then parses and checks it like the planner brick's output; an HTTP error, a time-out
or a malformed plan falls back to the rules splitter with the reason recorded.

Example::

    planner = OpenAIPlanner(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-7B-Instruct")
"""

from __future__ import annotations

import json
import os
from typing import Any

from brickwork.errors import ConfigError, PlanError
from brickwork.orchestrator.planners.base import PLAN_SCHEMA, Planner, parse_plan
from brickwork.orchestrator.planners.rules import RulesPlanner
from brickwork.orchestrator.types import Plan

SYSTEM = """You split a user's request into the smallest steps a small model can do one at a time.
Reply with JSON {"steps": [{"subgoal": ..., "input": ...}, ...]}, one object per task, in order.
- "subgoal": the task, copied from the request; write {x} where its input goes.
- "input": the text the task works on, copied exactly from the request ("" if none), or {1}, {2}
  ... for the output of step 1, 2 ... when the task works on an earlier step's result.
- A request with one task is one step. Do not answer the tasks.
Example: "Give the plural of 'mouse', then spell it." ->
{"steps": [{"subgoal": "Give the plural of '{x}'", "input": "mouse"}, {"subgoal": "spell {x}", "input": "{1}"}]}"""


class OpenAIPlanner:
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        fallback: Planner | None = None,
        check_grounding: bool = True,
        transport: Any = None,
    ) -> None:
        self.transport = transport  # an httpx transport (tests pass httpx.MockTransport)
        self.base_url = (base_url or os.environ.get("BRICKWORK_PLANNER_URL") or "").rstrip("/")
        self.model = model or os.environ.get("BRICKWORK_PLANNER_MODEL") or ""
        if not self.base_url or not self.model:
            raise ConfigError(
                "the openai planner needs base_url and model (or $BRICKWORK_PLANNER_URL and $BRICKWORK_PLANNER_MODEL)"
            )
        self.api_key = api_key or os.environ.get("BRICKWORK_PLANNER_KEY") or os.environ.get("OPENAI_API_KEY") or ""
        self.timeout_s = timeout_s
        self.fallback = fallback or RulesPlanner()
        self.check_grounding = check_grounding

    def payload(self, instruction: str) -> dict[str, Any]:
        schema = {"type": "object", "properties": {"steps": PLAN_SCHEMA}, "required": ["steps"], "additionalProperties": False}
        return {
            "model": self.model,
            "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": instruction}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "plan", "schema": schema}},
        }

    def plan_batch(self, instructions: list[str]) -> list[Plan]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        out = []
        with httpx.Client(timeout=self.timeout_s, headers=headers, transport=self.transport) as client:
            for inst in instructions:
                try:
                    r = client.post(f"{self.base_url}/chat/completions", json=self.payload(inst))
                    r.raise_for_status()
                    text = r.json()["choices"][0]["message"]["content"]
                except (httpx.HTTPError, KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
                    out.append(self._fallback(inst, f"planner endpoint failed: {exc}", None))
                    continue
                try:
                    out.append(parse_plan(text, planner=self.name, instruction=inst, check_grounding=self.check_grounding))
                except PlanError as exc:
                    out.append(self._fallback(inst, str(exc), text))
        return out

    def _fallback(self, instruction: str, reason: str, raw: str | None) -> Plan:
        [p] = self.fallback.plan_batch([instruction])
        return Plan(steps=p.steps, planner=p.planner, fallback_reason=reason, raw=raw)
