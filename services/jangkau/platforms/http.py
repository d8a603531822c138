"""The HTTP transport the platform adapters send requests through, injected so
that tests never reach the network.

- `HttpTransport`: the protocol (`send(HttpRequest) -> HttpResponse`).
- `UrllibTransport`: the real one, standard library only, with a timeout on
  every request. Any HTTP status comes back as a response; only a request that
  got no answer (refused, timed out, DNS) raises `TransportError`.
- `RecordingTransport` wraps a real transport and keeps each exchange in the
  canonical, secret-free form the fixtures use; `ReplayTransport` answers from
  such recordings and refuses any request that was not recorded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

# Header names (lower case) and query/form parameter names whose values are
# credentials: recordings keep their presence, never their value.
SECRET_HEADERS: frozenset[str] = frozenset({"authorization", "developer-token"})
SECRET_PARAMS: frozenset[str] = frozenset({"access_token", "appsecret_proof"})
SECRET_PLACEHOLDER = "<secret>"


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request. `url` has no query string: parameters go in `query`.
    At most one of `json_body` (sent as application/json) and `form` (sent as
    application/x-www-form-urlencoded) is set."""

    method: str
    url: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    json_body: Any = None
    form: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if "?" in self.url:
            raise ValueError(f"put query parameters in `query`, not the url: {self.url}")
        if self.json_body is not None and self.form:
            raise ValueError("a request has a JSON body or a form, not both")

    def with_header(self, name: str, value: str) -> HttpRequest:
        """A copy with header `name` set to `value` (replacing any of that name)."""
        kept = tuple((k, v) for k, v in self.headers if k.lower() != name.lower())
        return HttpRequest(
            self.method, self.url, self.query, (*kept, (name, value)), self.json_body, self.form
        )

    def full_url(self) -> str:
        if not self.query:
            return self.url
        return f"{self.url}?{urllib.parse.urlencode(self.query, quote_via=urllib.parse.quote)}"

    def body(self) -> tuple[bytes | None, str | None]:
        """The encoded body and its content type (None, None without a body)."""
        if self.json_body is not None:
            text = json.dumps(self.json_body, separators=(",", ":"), ensure_ascii=False)
            return text.encode(), "application/json"
        if self.form:
            return urllib.parse.urlencode(self.form).encode(), "application/x-www-form-urlencoded"
        return None, None

    def canonical(self) -> dict[str, Any]:
        """The form recordings store and compare: secrets replaced by a placeholder,
        header names lower case, parameters as objects."""
        shape: dict[str, Any] = {
            "method": self.method.upper(),
            "url": self.url,
            "query": _redacted_params(self.query),
            "headers": {
                name.lower(): SECRET_PLACEHOLDER if name.lower() in SECRET_HEADERS else value
                for name, value in self.headers
            },
        }
        if self.json_body is not None:
            shape["json"] = self.json_body
        if self.form:
            shape["form"] = _redacted_params(self.form)
        return shape


@dataclass(frozen=True)
class HttpResponse:
    """One HTTP response; header names are lower case."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON, numbers with a fraction as exact `Decimal`s (never float)."""
        return json.loads(self.body.decode("utf-8"), parse_float=Decimal)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class TransportError(Exception):
    """The request got no HTTP answer: connection refused, timeout, DNS failure."""


class HttpTransport(Protocol):
    def send(self, request: HttpRequest) -> HttpResponse: ...


class UrllibTransport:
    """Sends requests with the standard library, each with `timeout_seconds`."""

    def __init__(self, timeout_seconds: float = 30.0, user_agent: str = "jangkau") -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")
        self.timeout_seconds = timeout_seconds
        self.user_agent = user_agent

    def send(self, request: HttpRequest) -> HttpResponse:
        data, content_type = request.body()
        raw = urllib.request.Request(request.full_url(), data=data, method=request.method.upper())
        raw.add_header("User-Agent", self.user_agent)
        raw.add_header("Accept", "application/json")
        if content_type:
            raw.add_header("Content-Type", content_type)
        for name, value in request.headers:
            raw.add_header(name, value)
        try:
            with urllib.request.urlopen(raw, timeout=self.timeout_seconds) as answer:
                return HttpResponse(answer.status, answer.read(), _lower_headers(answer.headers))
        except urllib.error.HTTPError as err:
            # A 4xx/5xx is an answer: the adapter reads the platform's error body.
            with err:
                return HttpResponse(err.code, err.read(), _lower_headers(err.headers))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise TransportError(f"{request.method} {request.url}: {err}") from err


# --- recordings ------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedExchange:
    """A request in canonical form and the response the platform gave to it."""

    request: dict[str, Any]
    response: HttpResponse

    def to_json(self) -> dict[str, Any]:
        response: dict[str, Any] = {"status": self.response.status}
        if self.response.headers:
            response["headers"] = dict(self.response.headers)
        try:
            response["body"] = json.loads(self.response.body) if self.response.body else None
        except ValueError:
            response["text"] = self.response.body.decode("utf-8", errors="replace")
        return {"request": self.request, "response": response}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordedExchange:
        answer = data["response"]
        if "text" in answer:
            body = str(answer["text"]).encode()
        elif answer.get("body") is None:
            body = b""
        else:
            body = json.dumps(answer["body"]).encode()
        headers = {str(k).lower(): str(v) for k, v in answer.get("headers", {}).items()}
        return cls(dict(data["request"]), HttpResponse(int(answer["status"]), body, headers))


def load_recording(path: Path) -> dict[str, list[RecordedExchange]]:
    """A fixture file's cases: {"cases": {name: [exchange, ...]}} -> {name: [RecordedExchange]}."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: [RecordedExchange.from_json(item) for item in exchanges]
        for name, exchanges in document["cases"].items()
    }


class UnrecordedRequest(AssertionError):
    """The code under test sent a request no recording holds."""


class ReplayTransport:
    """Answers each request with the response recorded for an identical canonical
    request, each recording at most once, in any order. Anything else raises
    `UnrecordedRequest`, so a test can never reach the network."""

    def __init__(self, exchanges: Sequence[RecordedExchange]) -> None:
        self._pending = list(exchanges)
        self.sent: list[HttpRequest] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        shape = request.canonical()
        for index, exchange in enumerate(self._pending):
            if exchange.request == shape:
                del self._pending[index]
                self.sent.append(request)
                return exchange.response
        expected = "\n".join(json.dumps(e.request, sort_keys=True) for e in self._pending)
        raise UnrecordedRequest(
            "no recording for request:\n"
            f"{json.dumps(shape, sort_keys=True)}\nunused recordings:\n{expected or '(none)'}"
        )

    @property
    def unused(self) -> list[RecordedExchange]:
        """Recordings no request has matched yet."""
        return list(self._pending)


class RecordingTransport:
    """Passes requests to `inner` and keeps every exchange, secrets redacted, so a
    run against a platform's test account can be saved as a fixture."""

    def __init__(self, inner: HttpTransport) -> None:
        self.inner = inner
        self.exchanges: list[RecordedExchange] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        response = self.inner.send(request)
        self.exchanges.append(RecordedExchange(request.canonical(), response))
        return response

    def dump(self, path: Path, case: str) -> None:
        """Write (or add to) fixture file `path` the recorded exchanges as case `case`."""
        document: dict[str, Any] = {"cases": {}}
        if path.exists():
            document = json.loads(path.read_text(encoding="utf-8"))
        document.setdefault("cases", {})[case] = [e.to_json() for e in self.exchanges]
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")


def _redacted_params(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    return {name: SECRET_PLACEHOLDER if name in SECRET_PARAMS else value for name, value in params}


def _lower_headers(headers: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in headers.items()}
