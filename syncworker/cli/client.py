"""The HTTP side of the ``gitops`` command: one session against the server's REST API,
and every way that can go wrong turned into a ``CliError`` that says what to check.

Never imports Django: the command runs on a laptop against a deployed system. The token
is sent, never printed, not even in an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

TIMEOUT = 30.0
EXIT_FAILED = 1  # what was asked for ended badly (a deployment or a poll failed)
EXIT_ERROR = 3  # the server could not be asked (URL, token, unknown name, refused)
EXIT_TIMEOUT = 4  # --wait gave up


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(
            f"GITOPS_URL / --url must be an http(s) URL such as http://127.0.0.1:8000, not {url!r}"
        )
    return url.strip().rstrip("/")


@dataclass
class Api:
    base_url: str
    token: str = ""
    timeout: float = TIMEOUT

    def __post_init__(self) -> None:
        self.base_url = check_base_url(self.base_url)
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "gitops-cli"
        if self.token:
            self.session.headers["Authorization"] = f"Token {self.token}"

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params={k: v for k, v in params.items() if v})

    def post(self, path: str) -> Any:
        return self._call("POST", path)

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, params=params, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise CliError(f"TLS error talking to {self.base_url}: {exc}") from None
        except requests.exceptions.ConnectionError:
            raise CliError(
                f"cannot reach {self.base_url} (connection failed): is GITOPS_URL / --url right "
                "and the server running?"
            ) from None
        except requests.exceptions.Timeout:
            raise CliError(f"{self.base_url} did not answer within {self.timeout:.0f} s") from None
        return self._answer(method, path, response)

    def _answer(self, method: str, path: str, response: requests.Response) -> Any:
        body = _json(response)
        detail = _detail(body)
        status = response.status_code
        if status == 401 or (status == 403 and not self.token):
            if self.token:
                raise CliError(
                    f"the server refused the token ({status}: {detail}); check GITOPS_TOKEN"
                )
            raise CliError(
                f"{method} {path} needs a staff user's API token ({status}: {detail}); set "
                "GITOPS_TOKEN or pass --token (tokens are made in the admin under Auth Token)"
            )
        if status == 403:
            raise CliError(f"the token's user may not do this ({detail}): a staff user is needed")
        if status == 404 and body is not None and detail:
            raise CliError(detail)
        if body is None:
            raise CliError(
                f"{self.base_url} does not look like a Simple GitOps server: {method} {path} "
                f"answered {status} {response.headers.get('Content-Type', 'without a type')}"
            )
        if status == 409:
            raise CliError(f"refused: {detail}", EXIT_FAILED)
        if status == 400:
            raise CliError(f"bad request: {_field_errors(body)}")
        if status >= 400:
            raise CliError(f"{method} {path} failed with {status}: {detail}")
        return body


def _json(response: requests.Response) -> Any:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _detail(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return ""


def _field_errors(body: Any) -> str:
    if isinstance(body, dict):
        return "; ".join(
            f"{name}: {' '.join(map(str, errors)) if isinstance(errors, list) else errors}"
            for name, errors in body.items()
        )
    return str(body)


def path(*segments: str | int) -> str:
    """``/api/...`` with each segment quoted (a name on the command line is not trusted)."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments) + "/"
