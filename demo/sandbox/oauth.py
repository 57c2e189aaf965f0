"""Authlib glue for the sandbox's authorization server.

Authlib provides the RFC 6749/7636 state machine; this module gives it the
sandbox's storage (hashes only), the Green Button scope rules and the extra
token-response fields (``resourceURI``, ``authorizationURI``,
``customerResourceURI``) that UtilityAPI returns.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.base import invalid_error_characters
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError, UnsupportedResponseTypeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Blueprint, current_app, g, has_request_context
from flask import request as flask_request
from sqlalchemy import bindparam, select, update

from ..config import normalized_origin
from ..scope import ScopeError, parse_scope
from ..storage import utcnow
from ..tokens import digest, new_token, same
from ..web import csrf
from . import lifecycle
from .credentials import CLIENT_SCOPE, bulk_id
from .custodian import ScopeNotAllowed, check_requestable
from .models import AuthorizationCodeRow, AuthorizationRow, ClientRow, TokenRow
from .resources import grants_customer_data, resource_base

log = logging.getLogger(__name__)


def ctx():
    return current_app.extensions["gbc_sandbox"]


@dataclass
class SandboxClient:
    """Authlib's view of a registered third party."""

    row: ClientRow

    def get_client_id(self):
        return self.row.client_id

    #: Without a redirect_uri the customer ends on their authorization receipt (reference
    #: §1.3). Authlib needs some redirect URI to validate the request; this marker is never
    #: redirected to: the consent view shows the receipt instead, and errors show a page.
    RECEIPT = "urn:gbc-demo:receipt"

    def get_default_redirect_uri(self):
        return self.RECEIPT

    def get_allowed_scope(self, scope):
        # the scope is optional at UtilityAPI (the consent form starts from a default);
        # the server's validate_requested_scope has already checked a given one
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        # exact, byte-for-byte matching (RFC 9700 §4.1.3)
        return redirect_uri in (self.row.redirect_uris or [])

    def check_client_secret(self, client_secret):
        return same(digest(client_secret or ""), self.row.secret_hash)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in ("authorization_code", "refresh_token", "client_credentials")


@dataclass
class CodeRecord:
    row: AuthorizationCodeRow
    #: the code's authorization, read in the session that spent the code (None: not found)
    authorization: AuthorizationRow | None = None

    def get_redirect_uri(self):
        return self.row.redirect_uri

    def get_scope(self):
        return self.row.scope

    def get_nonce(self):
        return None

    def get_auth_time(self):
        return None

    @property
    def code_challenge(self):
        return self.row.code_challenge

    @property
    def code_challenge_method(self):
        return self.row.code_challenge_method


class S256Only(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]


#: statements of the token endpoint, built once (not rebuilt and re-keyed for the cache per request)
_SPEND_CODE = (update(AuthorizationCodeRow)
               .where(AuthorizationCodeRow.code_hash == bindparam("hashed"), AuthorizationCodeRow.used.is_(False))
               .values(used=True)
               .returning(AuthorizationCodeRow))
_MARK_REPLAYED = (update(AuthorizationCodeRow)
                  .where(AuthorizationCodeRow.code_hash == bindparam("hashed"))
                  .values(replayed=True)
                  .returning(AuthorizationCodeRow.authorization_uid))
_HOLD_CODE = (update(AuthorizationCodeRow)
              .where(AuthorizationCodeRow.code_hash == bindparam("hashed"))
              .values(used=True)
              .returning(AuthorizationCodeRow.replayed))
_AUTHORIZATION = select(AuthorizationRow).where(AuthorizationRow.uid == bindparam("uid"))
_CLIENT = select(ClientRow).where(ClientRow.client_id == bindparam("client_id"))


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        # Authlib quotes an unregistered redirect_uri in its error description and fails
        # (a 500) on characters the description may not hold: quote it with those replaced
        uri = request.payload.redirect_uri
        if uri and not client.check_redirect_uri(uri):
            raise InvalidRequestError(f"Redirect URI {error_text(uri)} is not supported by client.")
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def save_authorization_code(self, code, request):
        """In the consent's own transaction when there is one (``g.consent_session``): the
        customer's decision and its code are committed together, so a worker dying in between
        leaves neither, never an authorization no token can ever be issued for."""
        authorization: AuthorizationRow = request.user
        data = request.payload.data
        row = AuthorizationCodeRow(
            code_hash=digest(code),
            client_id=request.client.get_client_id(),
            authorization_uid=authorization.uid,
            redirect_uri=request.payload.redirect_uri or "",
            scope=authorization.scope,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method") or (
                "S256" if data.get("code_challenge") else None),
            expires=utcnow() + timedelta(seconds=ctx().settings["sandbox_code_ttl"]),
        )
        consent = g.get("consent_session")
        if consent is not None:
            consent.add(row)
            consent.flush()
            return
        with ctx().db.session() as s:
            s.add(row)

    def query_authorization_code(self, code, client):
        """The code's record, spent in the same statement: any presentation uses it up, whether
        the rest of the request (client, redirect_uri, PKCE verifier) turns out right or not, so
        two requests racing with one code can't both get tokens, and a code presented by the
        wrong client or with a wrong verifier is burnt. A spent code presented again is a
        replay (RFC 6749 §4.1.2): the tokens it gave are revoked."""
        code_hash = digest(code)
        with ctx().db.session() as s:
            row = s.scalars(_SPEND_CODE, {"hashed": code_hash}).one_or_none()
            if row is None:
                # marked first (this waits for a token being saved for it, see save_token), then revoked
                replayed = s.execute(_MARK_REPLAYED, {"hashed": code_hash}).scalar_one_or_none()
                if replayed is not None:
                    log.warning("authorization code replayed for authorization %s: its tokens are revoked", replayed)
                    lifecycle.revoke_tokens(s, replayed)
                return None
            if row.client_id != client.get_client_id() or row.expires < utcnow():
                return None
            # read here rather than in a session of its own (authenticate_user checks it)
            return CodeRecord(row, s.scalars(_AUTHORIZATION, {"uid": row.authorization_uid}).first())

    def delete_authorization_code(self, authorization_code):
        """Nothing left to do: the code was spent when it was read (kept to recognise replays)."""

    def authenticate_user(self, authorization_code):
        """The code's authorization, active: read when the code was spent (the token is saved
        with its own check against a replay, and ESPI checks the status on every read)."""
        row = authorization_code.authorization
        if row is None or row.status != 1:
            return None
        return row


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """``grant_type=refresh_token`` (reference §1.7). With ``sandbox_refresh_rotation`` each
    refresh returns a new refresh token and the old one is spent; presenting a spent one
    again revokes every token of that authorization (RFC 9700 §4.14.2 replay detection).
    Without rotation the same refresh token is returned, as the platform may do."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    @property
    def INCLUDE_NEW_REFRESH_TOKEN(self):  # noqa: N802 - Authlib's name
        return bool(ctx().settings["sandbox_refresh_rotation"])

    def authenticate_refresh_token(self, refresh_token):
        with ctx().db.session() as s:
            row = s.query(TokenRow).filter_by(refresh_hash=digest(refresh_token)).first()
            if row is None or row.revoked:
                return None
            ttl = int(ctx().settings["sandbox_refresh_token_ttl"])
            if ttl and (row.refresh_issued or row.issued) + timedelta(seconds=ttl) < utcnow():
                return None
            if self.INCLUDE_NEW_REFRESH_TOKEN:
                # spend it atomically: of two concurrent refreshes only one matches the UPDATE
                spent = (s.query(TokenRow).filter(TokenRow.id == row.id, TokenRow.refresh_used.is_(False))
                         .update({"refresh_used": True}, synchronize_session=False))
                if spent != 1:
                    log.warning("refresh token replayed for authorization %s: revoking its tokens",
                                row.authorization_uid)
                    s.query(TokenRow).filter_by(client_id=row.client_id,
                                                authorization_uid=row.authorization_uid).update({"revoked": True})
                    return None
            return row

    def authenticate_user(self, refresh_token):
        with ctx().db.session() as s:
            row = s.get(AuthorizationRow, refresh_token.authorization_uid)
            if row is None or row.status != 1 or lifecycle.is_expired(row):
                return None
            return row

    def revoke_old_credential(self, refresh_token):
        """Nothing left to do: a rotated refresh token was spent when it was accepted."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """``grant_type=client_credentials`` → a client_access_token for the Authorization
    list and Bulk (reference §1.8)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Revocation(RevocationEndpoint):
    """RFC 7009 token revocation (``POST /oauth/revoke``). It ends tokens, not the
    authorization: UtilityAPI revokes an authorization through the JSON API."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        with ctx().db.session() as s:
            query = s.query(TokenRow)
            row = None
            if token_type_hint != "refresh_token":
                row = query.filter_by(access_hash=digest(token_string)).first()
            if row is None and token_type_hint != "access_token":
                row = query.filter_by(refresh_hash=digest(token_string)).first()
            return row

    def revoke_token(self, token, request):
        with ctx().db.session() as s:
            row = s.get(TokenRow, token.id)
            if row is not None:
                row.revoked = True


def error_text(text: str) -> str:
    """``text`` fit for an OAuth ``error_description`` (RFC 6749 §4.1.2.1: printable ASCII
    without '"' and '\\'): other characters become '?'. Authlib raises ValueError (a 500)
    for an error built with any of them."""
    bad = set(invalid_error_characters(text))
    return "".join("?" if c in bad else c for c in text)


class SandboxAuthorizationServer(AuthorizationServer):
    """Accepts a rebuilt request, so the consent step (several pages after
    ``/oauth/authorize``) can be validated and answered by Authlib."""

    def create_oauth2_request(self, request):
        return FlaskOAuth2Request(request if request is not None else flask_request)

    def handle_response(self, status_code, payload, headers):
        """Every response; a redirect back to the client (code or error) gets ``iss`` with
        ``sandbox_iss_parameter`` (RFC 9207 §2: success and error responses alike)."""
        response = super().handle_response(status_code, payload, headers)
        if response.status_code in (302, 303) and response.location and ctx().settings.get("sandbox_iss_parameter"):
            response.location = add_params_to_uri(response.location, {"iss": issuer(ctx().settings)})
        return response

    def get_authorization_grant(self, request):
        response_type = request.payload.response_type or ""
        if invalid_error_characters(response_type):
            # Authlib quotes an unknown response_type in its error description, and fails on
            # one it may not quote; answer as it would, without quoting it
            raise UnsupportedResponseTypeError(
                error_text(response_type), description="The response type is not supported by the server.",
                redirect_uri=self._error_redirect_uri(request))
        return super().get_authorization_grant(request)

    def _error_redirect_uri(self, request) -> str | None:
        """Where Authlib sends an authorization error: back to the client only when it exists
        and the redirect_uri is one of its own (RFC 6749 §4.1.2.1), else None (a page)."""
        client = self.query_client(request.payload.client_id) if request.payload.client_id else None
        if client is None:
            return None
        requested = request.payload.redirect_uri
        if not requested:
            return client.get_default_redirect_uri()
        return requested if client.check_redirect_uri(requested) else None

    def validate_requested_scope(self, scope):
        if not scope:
            return  # optional at UtilityAPI; the consent form starts from the default
        try:
            check_requestable(parse_scope(scope))
        except (ScopeError, ScopeNotAllowed) as exc:
            raise InvalidScopeError(description=error_text(str(getattr(exc, "message", exc)))) from None


def issuer(settings: dict) -> str:
    """The sandbox's issuer identifier (RFC 9207): the origin of its public URL, in the form the
    site expects by default (lower case, no default port, no path), so the two always agree."""
    return normalized_origin(settings["sandbox_url"])


def _clients_read() -> dict:
    """The registrations this request already read, by client id: Authlib asks for the client
    more than once in one request (the consent validates the original request, then answers it).
    Kept on the request object, so nothing outlives the request."""
    if not has_request_context():
        return {}
    current = flask_request._get_current_object()
    memo = getattr(current, "_gbc_clients", None)
    if memo is None:
        memo = current._gbc_clients = {}
    return memo


def remember_client(row: ClientRow) -> None:
    """``row``, just read by the view, is the registration Authlib gets in this request."""
    _clients_read()[row.client_id] = SandboxClient(row)


def query_client(client_id):
    memo = _clients_read()
    if client_id in memo:
        return memo[client_id]
    with ctx().db.session() as s:
        row = s.scalars(_CLIENT, {"client_id": client_id}).first()
    client = SandboxClient(row) if row else None
    if client is not None:
        memo[client_id] = client
    return client


def save_token(token, request):
    """Store hashes only, and add UtilityAPI's Green Button fields to the response."""
    settings = ctx().settings
    authorization: AuthorizationRow | None = request.user
    base = resource_base(settings["sandbox_url"])
    refreshing = request.form.get("grant_type") == "refresh_token"
    with ctx().db.session() as s:
        refresh_issued = utcnow()
        if authorization is None:
            token["scope"] = CLIENT_SCOPE
        elif refreshing and not token.get("refresh_token"):
            # no rotation: the same refresh token moves to the new access token's record,
            # keeping when it was issued (its lifetime does not slide)
            presented = request.form.get("refresh_token") or ""
            old = s.query(TokenRow).filter_by(refresh_hash=digest(presented)).first()
            if old is not None:
                refresh_issued = old.refresh_issued or old.issued
                old.refresh_hash = None
            s.flush()
            token["refresh_token"] = presented
        s.add(TokenRow(
            access_hash=digest(token["access_token"]),
            refresh_hash=digest(token["refresh_token"]) if token.get("refresh_token") else None,
            refresh_issued=refresh_issued if token.get("refresh_token") else None,
            token_class="access" if authorization else "client",
            client_id=request.client.get_client_id(),
            authorization_uid=authorization.uid if authorization else None,
            scope=token.get("scope", ""),
            expires=utcnow() + timedelta(seconds=int(token["expires_in"])),
            revoked=_code_replayed(s, request) or not _still_active(s, authorization),
        ))
    if authorization is None:
        token["resourceURI"] = f"{base}/Batch/Bulk/{bulk_id(request.client.get_client_id())}"
        token["authorizationURI"] = f"{base}/Authorization"
    else:
        token["resourceURI"] = f"{base}/Subscription/{authorization.uid}"
        token["authorizationURI"] = f"{base}/Authorization/{authorization.uid}"
        if grants_customer_data(token.get("scope") or ""):
            token["customerResourceURI"] = f"{base}/RetailCustomer/{authorization.uid}"


_STATUS = select(AuthorizationRow.status).where(AuthorizationRow.uid == bindparam("uid"))


def _still_active(s, authorization: AuthorizationRow | None) -> bool:
    """Whether the token's authorization is still active as the token is saved: one revoked
    since the code was spent gets a token born revoked (its revocation could not see it)."""
    if authorization is None:
        return True
    return s.execute(_STATUS, {"uid": authorization.uid}).scalar() == 1


def _code_replayed(s, request) -> bool:
    """For a token issued for an authorization code: whether that code has been presented again
    meanwhile. Reading it takes the row's write lock, so a replay either marked it before, or waits
    for this token to be committed and then revokes it: the winner of a race with a stolen code
    never keeps a live token."""
    record = getattr(request, "authorization_code", None)
    if request.form.get("grant_type") != "authorization_code" or not isinstance(record, CodeRecord):
        return False
    # a write, not a read: it takes the row's lock (PostgreSQL) or the database's write lock (SQLite)
    # before the token row is added, and holds it until the token is committed
    replayed = s.execute(_HOLD_CODE, {"hashed": record.row.code_hash}).scalar_one_or_none()
    return bool(replayed)


def _token_generator(*_args, **_kwargs):
    return new_token()


def create_server(app) -> SandboxAuthorizationServer:
    ttl = int(app.config["GBC"]["sandbox_access_token_ttl"])
    app.config.update(
        OAUTH2_ACCESS_TOKEN_GENERATOR=_token_generator,
        OAUTH2_REFRESH_TOKEN_GENERATOR=_token_generator,
        OAUTH2_TOKEN_EXPIRES_IN={"authorization_code": ttl, "refresh_token": ttl, "client_credentials": ttl},
    )
    server = SandboxAuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(AuthorizationCodeGrant, [S256Only(required=False)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Revocation)
    return server


bp = Blueprint("oauth", __name__)


@bp.post("/oauth/revoke")
@csrf.exempt
def revoke():
    return current_app.extensions["gbc_oauth_server"].create_endpoint_response("revocation")
