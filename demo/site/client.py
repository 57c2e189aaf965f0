"""The third party's side of the protocol, free of Flask: build the
authorization URL, exchange the code (Authlib's OAuth2 client), and read the
custodian's ESPI resources over HTTP."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from ..espi import parse as espi_parse
from ..espi.parse import EspiError

MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    redirect_uri: str
    token_auth_method: str = "client_secret_basic"
    pkce: bool = True
    timeout: float = 10.0


class CustodianError(Exception):
    """A failed exchange with the custodian, explained for a person.

    ``kind`` is the OAuth/HTTP error code or one of ``timeout``,
    ``connection``, ``http``, ``not_xml``, ``too_large``.
    """

    def __init__(self, kind: str, message: str, *, step: str, status: int | None = None,
                 description: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.step = step
        self.status = status
        self.description = description

    def as_dict(self) -> dict:
        return {"error": self.kind, "message": self.message, "step": self.step,
                "status": self.status, "error_description": self.description}


class NotReady(Exception):
    """The custodian answered 202 Accepted: the data is still being prepared.

    ``authorization`` carries what was already read (the Authorization entry is
    served at once; the data endpoints wait until collection is done)."""

    def __init__(self, retry_after: int | None, authorization: dict | None = None) -> None:
        super().__init__(f"not ready, retry after {retry_after}s")
        self.retry_after = retry_after
        self.authorization = authorization


def new_state() -> str:
    return generate_token(43)


def new_code_verifier() -> str:
    return generate_token(64)


def _session(cfg: ClientConfig, scope: str | None = None) -> OAuth2Session:
    return OAuth2Session(
        cfg.client_id,
        cfg.client_secret,
        scope=scope,
        redirect_uri=cfg.redirect_uri,
        token_endpoint_auth_method=cfg.token_auth_method,
        code_challenge_method="S256" if cfg.pkce else None,
    )


def authorization_url(cfg: ClientConfig, scope: str, state: str, code_verifier: str | None) -> str:
    """The URL that sends the customer to the custodian (the scope as one percent-encoded string)."""
    with _session(cfg, scope) as sess:
        kwargs = {"code_verifier": code_verifier} if cfg.pkce and code_verifier else {}
        url, _ = sess.create_authorization_url(cfg.authorize_url, state=state, **kwargs)
    return url


def exchange_code(cfg: ClientConfig, code: str, code_verifier: str | None) -> dict:
    """``POST`` the token endpoint; returns the whole token JSON (with resourceURI & co)."""
    kwargs = {"code_verifier": code_verifier} if cfg.pkce and code_verifier else {}
    try:
        with _session(cfg) as sess:
            token = sess.fetch_token(cfg.token_url, grant_type="authorization_code", code=code,
                                     timeout=cfg.timeout, **kwargs)
    except OAuthError as exc:
        raise CustodianError(exc.error or "oauth_error", explain(exc.error), step="token",
                             description=exc.description) from None
    except requests.Timeout:
        raise CustodianError("timeout", f"The token endpoint did not answer within {cfg.timeout:g} s.",
                             step="token") from None
    except requests.ConnectionError:
        raise CustodianError("connection", f"Could not connect to the token endpoint {cfg.token_url}.",
                             step="token") from None
    except ValueError as exc:  # not JSON
        raise CustodianError("not_json", f"The token endpoint did not answer with JSON ({exc}).",
                             step="token") from None
    return dict(token)


def fetch_xml(url: str, access_token: str, *, step: str, timeout: float = 10.0) -> bytes:
    """GET an ESPI resource with the Bearer token; capped in size and time."""
    try:
        with requests.get(url, headers={"Authorization": f"Bearer {access_token}",
                                        "Accept": "application/atom+xml"},
                          timeout=timeout, stream=True, allow_redirects=False) as resp:
            if resp.status_code == 202:
                retry = resp.headers.get("Retry-After", "")
                raise NotReady(int(retry) if retry.isdigit() else None)
            if resp.status_code != 200:
                body = resp.raw.read(2000, decode_content=True).decode("utf-8", "replace")
                raise CustodianError("http", f"{url} answered HTTP {resp.status_code}.", step=step,
                                     status=resp.status_code, description=body[:500])
            chunks, size = [], 0
            for chunk in resp.iter_content(65536):
                size += len(chunk)
                if size > MAX_BODY:
                    raise CustodianError("too_large", f"{url} sent more than {MAX_BODY // 2**20} MB.",
                                         step=step)
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.Timeout:
        raise CustodianError("timeout", f"{url} did not answer within {timeout:g} s.", step=step) from None
    except requests.ConnectionError:
        raise CustodianError("connection", f"Could not connect to {url}.", step=step) from None


def usage_points_url(resource_uri: str) -> str:
    """``…/[Batch/]Subscription/{id}`` -> ``…/Subscription/{id}/UsagePoint``: the meters
    without their interval data (a 2-year batch is tens of megabytes)."""
    url = resource_uri.replace("/Batch/Subscription/", "/Subscription/", 1).rstrip("/")
    return url if url.endswith("/UsagePoint") else url + "/UsagePoint"


def batch_url(resource_uri: str) -> str:
    """``…/Subscription/{id}`` (token response form) -> ``…/Batch/Subscription/{id}``."""
    if "/Batch/Subscription/" in resource_uri:
        return resource_uri
    return resource_uri.replace("/Subscription/", "/Batch/Subscription/", 1)


@dataclass
class Fetched:
    authorization: dict | None
    meters: list[dict]


def fetch_authorization_and_meters(token: dict, *, timeout: float) -> Fetched:
    """The Authorization entry and the subscription's usage points, as plain dicts."""
    access = token["access_token"]
    authorization = None
    if token.get("authorizationURI"):
        xml = fetch_xml(token["authorizationURI"], access, step="authorization", timeout=timeout)
        try:
            authorization = authorization_dict(espi_parse.parse_authorization(xml))
        except EspiError as exc:
            raise CustodianError("bad_xml", f"The Authorization resource could not be read: {exc}",
                                 step="authorization") from None
    resource = token.get("resourceURI") or (authorization or {}).get("resource_uri")
    if not resource:
        raise CustodianError("no_resource", "The token response has no resourceURI, so there is no "
                             "subscription to read.", step="meters")
    try:
        xml = fetch_xml(usage_points_url(resource), access, step="meters", timeout=timeout)
    except NotReady as exc:
        exc.authorization = authorization
        raise
    try:
        points = espi_parse.parse_usage_points(xml)
    except EspiError as exc:
        raise CustodianError("bad_xml", f"The subscription feed could not be read: {exc}",
                             step="meters") from None
    return Fetched(authorization, [meter_dict(up) for up in with_local_time(points, access, timeout)])


def with_local_time(points: list, access: str, timeout: float) -> list:
    """UsagePoints from a UsagePoint feed name their LocalTimeParameters only by a related
    link: read each distinct one. It only adds the time zone, so failures leave it unknown."""
    cache: dict[str, object] = {}
    out = []
    for up in points:
        href = next((h for h in up.related if "/LocalTimeParameters/" in h), None)
        if up.local_time is None and href:
            if href not in cache:
                try:
                    cache[href] = espi_parse.parse_local_time(
                        fetch_xml(href, access, step="meters", timeout=timeout))
                except (CustodianError, NotReady, EspiError):
                    cache[href] = None
            up = dataclasses.replace(up, local_time=cache[href])
        out.append(up)
    return out


def authorization_dict(auth) -> dict:
    def period(p):
        return {"start": p.start, "duration": p.duration} if p else None

    return {
        "uid": auth.uid,
        "status": auth.status,
        "status_name": auth.status_name,
        "scope": auth.scope,
        "token_type": auth.token_type,
        "authorized_period": period(auth.authorized_period),
        "published_period": period(auth.published_period),
        "expires_at": auth.expires_at,
        "grant_type": auth.grant_type,
        "resource_uri": auth.resource_uri,
        "authorization_uri": auth.authorization_uri,
        "customer_resource_uri": auth.customer_resource_uri,
    }


def meter_dict(up) -> dict:
    lt = up.local_time
    return {
        "usage_point_id": up.id,
        "self_uri": up.self_uri,
        "title": up.title,
        "service_kind": up.service_kind,
        "service_kind_name": up.service_kind_name,
        "tariff": up.tariff_profile,
        "local_time": None if lt is None else {
            "tz_offset": lt.tz_offset, "dst_offset": lt.dst_offset,
            "dst_start_rule": lt.dst_start_rule, "dst_end_rule": lt.dst_end_rule,
        },
    }


EXPLANATIONS = {
    "access_denied": "The customer declined to share their data (or the utility refused the request).",
    "invalid_request": "The request was missing a parameter or had a malformed one.",
    "unauthorized_client": "This client is not allowed to use this grant type.",
    "unsupported_response_type": "The custodian does not support response_type=code for this client.",
    "invalid_scope": "The scope was not accepted: check the function blocks and the scope syntax.",
    "server_error": "The custodian hit an error while handling the request.",
    "temporarily_unavailable": "The custodian is temporarily unavailable; try again later.",
    "invalid_client": "The custodian did not accept the client credentials: check client_id, client_secret "
                      "and the token endpoint authentication method.",
    "invalid_grant": "The authorization code was not accepted: it may have been used already, expired, "
                     "or the redirect_uri / PKCE code_verifier did not match.",
    "unsupported_grant_type": "The token endpoint does not support this grant type.",
    "mismatching_state": "The state returned does not match a flow started in this browser.",
}


def explain(code: str | None) -> str:
    return EXPLANATIONS.get(code or "", f"The custodian reported the error {code!r}.")
