"""A small HTTP client for a vLLM OpenAI-compatible server: health, models, LoRA load/unload,
completions; every failure becomes a `BackendError` that says what happened and where.

Time-outs bound every call (a slow or frozen server is an error after `timeout` seconds, never a
hang). Calls that are safe to repeat are retried when the request never reached the server
(connection refused or reset before sending) or the server answered 502/503/504; a time-out is
not retried, since a slow server does not get faster by being asked twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brickwork.errors import BackendError, ConfigError

_RETRY_STATUS = {502, 503, 504}


@dataclass(frozen=True, kw_only=True)
class HTTPResult:
    status: int
    body: Any


class ServerClient:
    """Talks to one server URL. `describe` (optional) adds the server's state to error messages."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        control_timeout: float,
        connect_timeout: float,
        retries: int,
        api_key: str | None = None,
        describe: Callable[[], str] | None = None,
        max_connections: int = 32,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.control_timeout = control_timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self._describe = describe
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def close(self) -> None:
        self._http.close()

    def _where(self) -> str:
        extra = self._describe() if self._describe is not None else ""
        return f" ({extra})" if extra else ""

    def call(
        self, method: str, path: str, *, json: Any = None, timeout: float | None = None, idempotent: bool = True
    ) -> HTTPResult:
        """One HTTP call with time-outs, retries of idempotent calls, errors mapped to BackendError."""
        import httpx

        t = self.control_timeout if timeout is None else timeout
        tmo = httpx.Timeout(t, connect=min(self.connect_timeout, t))
        attempts = 1 + (self.retries if idempotent else 0)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
            try:
                resp = self._http.request(method, path, json=json, timeout=tmo)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):
                    last = exc
                    continue
                raise BackendError(
                    f"the vLLM server at {self.url} did not answer {method} {path} within {t:g}s{self._where()}"
                ) from exc
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                last = exc
                continue
            except httpx.HTTPError as exc:
                raise BackendError(f"{method} {self.url}{path} failed: {exc}{self._where()}") from exc
            if resp.status_code in _RETRY_STATUS and attempt + 1 < attempts:
                continue  # the last attempt's answer is returned (and reported) as it is
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
            return HTTPResult(status=resp.status_code, body=body)
        what = "refused the connection" if isinstance(last, httpx.ConnectError) else "dropped the connection"
        if isinstance(last, httpx.ConnectTimeout):
            what = f"did not accept a connection within {self.connect_timeout:g}s"
        raise BackendError(
            f"the vLLM server at {self.url} {what} ({method} {path}, {attempts} attempt(s)): {last}{self._where()}"
        ) from last

    @staticmethod
    def error_text(result: HTTPResult) -> str:
        body = result.body
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict):
                return str(err.get("message", err))
            return str(err)
        return str(body)[:500]

    def check(self, result: HTTPResult, what: str) -> Any:
        """The body of a successful call; 4xx -> ConfigError, 5xx -> BackendError."""
        if result.status >= 400:
            msg = f"{what}: HTTP {result.status}: {self.error_text(result)}"
            if 400 <= result.status < 500:
                raise ConfigError(f"the vLLM server at {self.url} rejected {msg}")
            raise BackendError(f"the vLLM server at {self.url} failed {msg}{self._where()}")
        return result.body

    # -- endpoints -----------------------------------------------------------------------------
    def healthy(self) -> bool:
        """True if ``GET /health`` answers 200 (never raises; one quick attempt)."""
        import httpx

        try:
            resp = self._http.get("/health", timeout=httpx.Timeout(self.control_timeout, connect=self.connect_timeout))
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def models(self) -> list[dict[str, Any]]:
        body = self.check(self.call("GET", "/v1/models"), "GET /v1/models")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise BackendError(f"{self.url}/v1/models returned an unexpected body: {str(body)[:200]}")
        return body["data"]

    def load_adapter(self, name: str, path: str) -> None:
        """POST /v1/load_lora_adapter; an adapter already loaded under `name` counts as loaded."""
        res = self.call("POST", "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
        if res.status in (404, 405) and isinstance(res.body, dict) and "detail" in res.body:
            raise BackendError(  # FastAPI's own 404: the route does not exist
                f"the vLLM server at {self.url} has no /v1/load_lora_adapter: start it with "
                "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=1"
            )
        if res.status == 400 and "already been loaded" in self.error_text(res):
            return
        if res.status >= 400:
            from brickwork.errors import AdapterError

            raise AdapterError(
                f"the vLLM server at {self.url} could not load adapter {name} from {path}: "
                f"HTTP {res.status}: {self.error_text(res)}"
            )

    def unload_adapter(self, name: str) -> None:
        res = self.call("POST", "/v1/unload_lora_adapter", json={"lora_name": name})
        if res.status >= 400 and res.status != 404:  # 404: already gone (e.g. the server restarted)
            self.check(res, f"unloading adapter {name}")
