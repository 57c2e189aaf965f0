"""The token tools of the run page, free of Flask: refresh, client_credentials → Authorization
list, ReadServiceStatus, revoke, and reading the authorization again.

Each tool makes real calls through a :class:`~.exchanges.Recorder` (so they appear in the
timeline), keeps the run, and stores its outcome — masked — under ``run.tools[name]``, with an
explanation when it failed and the sequence number of the exchange to look at.
"""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..espi import parse as espi_parse
from ..espi.parse import EspiError
from ..scope import ScopeError, parse_scope
from ..storage import Vault
from ..tokens import mask
from . import client as gbc
from . import runs as runs_mod
from .exchanges import Recorder
from .explain import explain_error
from .models import Run

TOOLS = ("refresh", "client_credentials", "service_status", "revoke", "fetch")
RESOURCE_PATH = "/DataCustodian/espi/1_1/resource"


def _config(run: Run, vault: Vault, timeout: float) -> gbc.ClientConfig:
    return gbc.ClientConfig(
        client_id=run.client_id, client_secret=vault.decrypt(run.client_secret_enc) or "",
        authorize_url=run.authorize_url, token_url=run.token_url, redirect_uri=run.redirect_uri,
        token_auth_method=run.token_auth_method, pkce=False, timeout=timeout)


def stored_token(run: Run, vault: Vault) -> dict:
    try:
        return json.loads(vault.decrypt(run.token_enc) or "{}") if run.token_enc else {}
    except ValueError:
        return {}


def resource_base(run: Run, token: dict) -> str:
    """``…/DataCustodian/espi/1_1/resource`` of this custodian: from the URIs the custodian gave
    (resourceURI, authorizationURI), else next to the token endpoint."""
    for uri in (token.get("resourceURI"), token.get("authorizationURI"),
                (run.authorization or {}).get("resource_uri")):
        if uri and "/resource/" in uri:
            return uri[: uri.index("/resource/") + len("/resource")]
    parts = urlsplit(run.token_url)
    return f"{parts.scheme}://{parts.netloc}{RESOURCE_PATH}"


def _store(run: Run, name: str, result: dict, rec: Recorder) -> dict:
    # masked like the exchanges: a custodian's error text may echo a token back
    result = rec.masker.json_value({"at": int(time.time()), "exchange": rec.last_seq, **result})
    run.tools = {**(run.tools or {}), name: result}
    return result


def _failed(run: Run, name: str, exc: gbc.CustodianError, rec: Recorder, **extra) -> dict:
    error = exc.as_dict()
    found = explain_error(error)
    return _store(run, name, {"ok": False, "error": error, "explanation": found.as_dict() if found else None,
                              **extra}, rec)


def _missing(run: Run, name: str, code: str, rec: Recorder) -> dict:
    return _failed(run, name, gbc.CustodianError(code, explain_error({"error": code}).message, step=name), rec)


def refresh(run: Run, vault: Vault, timeout: float, rec: Recorder) -> dict:
    """``grant_type=refresh_token`` with the stored refresh token; the new token JSON is stored
    (encrypted) and the rotation shown: old vs new refresh token, last 4 characters."""
    token = stored_token(run, vault)
    old = token.get("refresh_token")
    if not old:
        return _missing(run, "refresh", "no_refresh_token", rec)
    try:
        new = gbc.refresh_token(_config(run, vault, timeout), old, http=rec.session())
    except gbc.CustodianError as exc:
        return _failed(run, "refresh", exc, rec, old_refresh=mask(old))
    returned = new.get("refresh_token")
    merged = {**token, **new, "refresh_token": returned or old}   # RFC 6749 §6: keep the old one if none came
    run.token_enc = vault.encrypt(json.dumps(merged))
    run.token_summary = runs_mod.token_summary(merged)
    if new.get("scope"):
        run.granted_scope = new["scope"]
    return _store(run, "refresh", {
        "ok": True, "old_refresh": mask(old), "new_refresh": mask(returned) if returned else None,
        "returned_refresh": bool(returned), "rotated": bool(returned) and returned != old,
        "old_access": mask(token.get("access_token")), "new_access": mask(new.get("access_token")),
        "expires_in": new.get("expires_in"), "scope": new.get("scope"),
    }, rec)


def client_credentials(run: Run, vault: Vault, timeout: float, rec: Recorder) -> dict:
    """``grant_type=client_credentials`` → client_access_token → ``GET`` the Authorization list
    (``authorizationURI`` of that response, or ``{resource base}/Authorization``)."""
    http = rec.session()
    try:
        token = gbc.client_credentials(_config(run, vault, timeout), http=http)
    except gbc.CustodianError as exc:
        return _failed(run, "client_credentials", exc, rec)
    url = token.get("authorizationURI") or resource_base(run, stored_token(run, vault)) + "/Authorization"
    summary = {"token_type": token.get("token_type"), "access_token": mask(token.get("access_token")),
               "expires_in": token.get("expires_in"), "scope": token.get("scope"),
               "resourceURI": token.get("resourceURI"), "authorizationURI": token.get("authorizationURI")}
    try:
        xml = gbc.fetch_xml(url, token.get("access_token", ""), step="authorizations", timeout=timeout, http=http)
        found = espi_parse.parse_authorizations(xml)
    except gbc.NotReady as exc:
        return _failed(run, "client_credentials", gbc.CustodianError(
            "not_ready", f"The Authorization list is not ready (Retry-After: {exc.retry_after}).",
            step="authorizations", status=202), rec, token=summary, url=url)
    except gbc.CustodianError as exc:
        return _failed(run, "client_credentials", exc, rec, token=summary, url=url)
    except EspiError as exc:
        return _failed(run, "client_credentials", gbc.CustodianError(
            "bad_xml", f"The Authorization list could not be read: {exc}", step="authorizations"),
            rec, token=summary, url=url)
    auths = [gbc.authorization_dict(a) for a in found]
    mine = (run.authorization or {}).get("uid")
    return _store(run, "client_credentials", {
        "ok": True, "token": summary, "url": url, "count": len(auths),
        "authorizations": [{**a, "this_run": a["uid"] == mine} for a in auths[:200]],
    }, rec)


STATUS_NAMES = {"0": "unavailable", "1": "normal"}


def service_status(run: Run, vault: Vault, timeout: float, rec: Recorder) -> dict:
    """``GET {resource base}/ReadServiceStatus`` with the run's access token (any valid token
    works; without one, a client_access_token is fetched first)."""
    token = stored_token(run, vault)
    url = resource_base(run, token) + "/ReadServiceStatus"
    http = rec.session()
    bearer, which = token.get("access_token"), "access_token"
    try:
        if not bearer:
            bearer, which = gbc.client_credentials(_config(run, vault, timeout), http=http)["access_token"], \
                "client_access_token"
        xml = gbc.fetch_xml(url, bearer, step="service_status", timeout=timeout, http=http)
        root = espi_parse.parse_document(xml)
    except gbc.NotReady:
        return _failed(run, "service_status", gbc.CustodianError(
            "not_ready", "ReadServiceStatus answered 202.", step="service_status", status=202), rec, url=url)
    except gbc.CustodianError as exc:
        return _failed(run, "service_status", exc, rec, url=url)
    except EspiError as exc:
        return _failed(run, "service_status", gbc.CustodianError(
            "bad_xml", f"The ServiceStatus could not be read: {exc}", step="service_status"), rec, url=url)
    current = next((el.text.strip() for el in root.iter() if isinstance(el.tag, str)
                    and el.tag.rsplit("}", 1)[-1] == "currentStatus" and el.text), None)
    return _store(run, "service_status", {"ok": True, "url": url, "token": which, "current_status": current,
                                          "meaning": STATUS_NAMES.get(current or "", "unknown")}, rec)


def revoke(run: Run, vault: Vault, timeout: float, rec: Recorder, *, api_token: str | None = None,
           api_url: str | None = None) -> dict:
    """End the run's access. With a JSON API token: ``POST {api}/authorizations/{uid}/revoke``,
    UtilityAPI's way (it revokes the authorization and deletes its data). Without one: RFC 7009
    at the token endpoint's ``/revoke`` (the sandbox has it; UtilityAPI does not)."""
    token = stored_token(run, vault)
    uid = (run.authorization or {}).get("uid") or _uid_from(token)
    if api_token:
        rec.learn(api_token)
        base = (api_url or _api_base(run)).rstrip("/")
        url = f"{base}/authorizations/{uid}/revoke"
        if not uid:
            return _missing(run, "revoke", "no_token", rec)
        try:
            body = gbc.post_json(url, api_token, step="revoke", timeout=timeout, http=rec.session())
        except gbc.CustodianError as exc:
            return _failed(run, "revoke", exc, rec, method="json_api", url=url)
        return _store(run, "revoke", {"ok": True, "method": "json_api", "url": url, "uid": uid,
                                      "is_revoked": body.get("is_revoked"), "revoked": body.get("revoked")}, rec)
    secret = token.get("refresh_token") or token.get("access_token")
    if not secret:
        return _missing(run, "revoke", "no_token", rec)
    hint = "refresh_token" if token.get("refresh_token") else "access_token"
    url = gbc.revocation_url(run.token_url)
    try:
        gbc.revoke_token(_config(run, vault, timeout), secret, hint, http=rec.session())
    except gbc.CustodianError as exc:
        return _failed(run, "revoke", exc, rec, method="rfc7009", url=url)
    return _store(run, "revoke", {"ok": True, "method": "rfc7009", "url": url, "hint": hint,
                                  "token": mask(secret)}, rec)


def fetch(run: Run, vault: Vault, timeout: float, rec: Recorder) -> dict:
    """Read the Authorization and the meters again with the stored access token (after a refresh,
    or to see what a revoked token gets). A failure leaves the run's data as it was."""
    token = stored_token(run, vault)
    if not token.get("access_token"):
        return _missing(run, "fetch", "no_token", rec)
    try:
        fetched = gbc.fetch_authorization_and_meters(token, timeout=timeout, http=rec.session())
    except gbc.NotReady as exc:
        return _failed(run, "fetch", gbc.CustodianError(
            "not_ready", f"The data is not ready yet (Retry-After: {exc.retry_after}).", step="meters",
            status=202), rec)
    except gbc.CustodianError as exc:
        return _failed(run, "fetch", exc, rec)
    if run.status == "error":       # the run failed after its token exchange: this read mended it
        runs_mod.apply_fetch(run, fetched, rec)
    else:
        runs_mod.record_fetched(run, fetched, rec)
    return _store(run, "fetch", {"ok": True, "meter_count": len(fetched.meters),
                                 "status": (fetched.authorization or {}).get("status_name")}, rec)


def can_retry(run: Run) -> bool:
    """Can the data reads of a failed run be tried again? Only once it holds an access token:
    a failed token exchange can't be repeated (see :func:`same_settings_query`)."""
    return run.status == "error" and bool(run.token_enc)


def retry(run: Run, vault: Vault, timeout: float, rec: Recorder) -> dict:
    """Try a failed run's reads again (Authorization, meters) with its stored access token; the
    run's status and error follow the outcome (data, still collecting, or the new error)."""
    token = stored_token(run, vault)
    if not token.get("access_token"):
        return {"ok": False, "error": {"error": "no_token", "message": explain_error({"error": "no_token"}).message}}
    try:
        outcome: object = gbc.fetch_authorization_and_meters(token, timeout=timeout, http=rec.session())
    except (gbc.NotReady, gbc.CustodianError) as exc:
        outcome = exc
    runs_mod.apply_fetch(run, outcome, rec)
    if isinstance(outcome, gbc.CustodianError):
        return {"ok": False, "error": run.error}
    return {"ok": True, "waiting": isinstance(outcome, gbc.NotReady)}


def same_settings_query(run: Run) -> list[tuple[str, str]]:
    """The connect form's fields for a new run that asks what ``run`` asked (the home page reads
    them from the query): a code is single-use, so after a failed token exchange the only way
    on is a new authorization."""
    try:
        scope = parse_scope(run.requested_scope or "")
    except ScopeError:
        return []
    query = [("function_blocks", str(fb)) for fb in scope.function_blocks]
    if scope.history_length is not None:
        query.append(("history", str(scope.history_length)))
    if scope.preferred_auth_end_date is not None:
        day = datetime.fromtimestamp(scope.preferred_auth_end_date, UTC).date()
        if day > datetime.now(UTC).date():
            query.append(("end_date", day.isoformat()))
    if scope.lookup:
        query += [("lookup_type", scope.lookup[0]), ("lookup_value", scope.lookup[1])]
    if scope.noedit:
        query.append(("noedit", "y"))
    if scope.meters_all:
        query.append(("meters_all", "y"))
    return query


def _uid_from(token: dict) -> str | None:
    uri = token.get("authorizationURI") or token.get("resourceURI") or ""
    tail = uri.rstrip("/").rsplit("/", 1)[-1]
    return tail if tail and tail not in ("Authorization", "UsagePoint") else None


def _api_base(run: Run) -> str:
    parts = urlsplit(run.token_url)
    return f"{parts.scheme}://{parts.netloc}/api/v2"


RUNNERS = {"refresh": refresh, "client_credentials": client_credentials, "service_status": service_status,
           "fetch": fetch}
