"""``/api/auth``: sign in, sign out, who am I, change my password; ``/api/users`` (admins)."""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Final, Literal

import msgspec
import trio
from quart import Blueprint, Response, request

from actors.session_store import Session, Sessions
from proxy.errors import (
    AuthenticationFailed,
    Conflict,
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamUnavailable,
)
from proxy.login_throttle import LoginRefused, SignInThrottle
from proxy.passwords import (
    PasswordPolicyError,
    Passwords,
    PasswordsBusy,
    check_new_password,
    generate_password,
)
from proxy.usernames import fold_username
from storage.clients import UNCHANGED
from storage.reads import ReadPool
from storage.users import (
    UserExists,
    UserRow,
    create_user,
    delete_user,
    get_user,
    list_users,
    record_login,
    set_password,
    update_user,
)
from storage.writer import StorageWriter
from web.api.common import (
    AuditLog,
    deps_of,
    json_response,
    now_ms,
    read_body,
    session,
)
from web.api.guard import SESSION_COOKIE

auth = Blueprint("api_auth", __name__, url_prefix="/api")


@dataclasses.dataclass(frozen=True, slots=True)
class AuthApi:
    """What ``/api/auth`` and ``/api/users`` use."""

    reads: ReadPool
    writer: StorageWriter
    sessions: Sessions
    passwords: Passwords
    throttle: SignInThrottle
    audit: AuditLog


def _deps() -> AuthApi:
    return deps_of(AuthApi)


Role = Literal["admin", "viewer"]


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class ChangePasswordBody(msgspec.Struct, forbid_unknown_fields=True):
    current_password: str
    new_password: str


class NewUserBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    role: Role = "viewer"
    display_name: str = ""
    # None: a one-time password is generated, returned once, and must be changed at first login.
    password: str | None = None


class UserChangesBody(msgspec.Struct, forbid_unknown_fields=True):
    role: Role | None = None
    display_name: str | None = None
    reset_password: bool = False


def user_json(user: UserRow) -> dict[str, object]:
    """A user as the API shows it: never the hash."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "must_change_password": user.must_change_password,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "last_login_at": user.last_login_at,
    }


def _session_json(current: Session) -> dict[str, object]:
    return {
        "username": current.username,
        "role": current.role,
        "must_change_password": current.must_change_password,
        "expires_at": int(current.expires_at * 1000),
    }


# -- sign in and out -------------------------------------------------------------------------------

BUSY_RETRY_S: Final = 1
# Ending an attempt is one Redis round trip at most (itself under a 1 s deadline).
THROTTLE_SETTLE_S: Final = 2.0


def _refusal(refused: LoginRefused) -> GatewayError:
    wait = str(refused.retry_after)
    if refused.reason == "in_progress":
        return RateLimited(
            "Another sign-in for this user or from this address is being checked; "
            f"try again in {wait} s.",
            code="login_in_progress",
            headers={"retry-after": wait},
        )
    return RateLimited(
        f"Too many failed sign-ins; try again in {wait} s.",
        code="login_throttled",
        headers={"retry-after": wait},
    )


async def _check_password(
    gw: AuthApi, username: str, password: str, address: str
) -> UserRow | None:
    """The user named ``username`` if ``password`` is theirs (else None), checked under the
    sign-in throttle and within the bounded places for sign-ins; 429 or 503 when
    refused."""
    # Refusals (locked, in progress, busy) are decided before any look-up or thread: a flood of
    # guesses costs little more than parsing them.
    try:
        known_address = await gw.throttle.attempt(username, address)
    except LoginRefused as refused:
        raise _refusal(refused) from None
    user: UserRow | None = None
    matched = checked = False
    try:
        with gw.passwords.sign_in_slot(known_address=known_address):
            checked = True
            user = await gw.reads.run(partial(get_user, username=username))
            matched = await gw.passwords.verify(
                user.password_hash if user else None, password, guest=not known_address
            )
    except PasswordsBusy:
        raise UpstreamUnavailable(
            "The gateway is checking too many sign-ins at once; try again in a moment.",
            code="login_busy",
            headers={"retry-after": str(BUSY_RETRY_S)},
        ) from None
    finally:
        # Shielded: a client that hangs up mid-check must not leave its attempt in progress.
        with trio.move_on_after(THROTTLE_SETTLE_S, shield=True):
            if matched:
                await gw.throttle.succeed(username, address)
            else:
                await gw.throttle.fail(username, address, checked=checked)
    return user if matched else None


@auth.post("/auth/login")
async def login() -> Response:
    body = await read_body(LoginBody)
    gw = _deps()
    user = await _check_password(gw, body.username, body.password, request.remote_addr or "unknown")
    if user is None:
        raise AuthenticationFailed("Wrong username or password.", code="invalid_credentials")
    stamp = now_ms()
    password_hash = user.password_hash
    if gw.passwords.needs_rehash(password_hash):
        password_hash = await gw.passwords.hash(body.password)
        await gw.writer.execute(
            partial(
                set_password,
                username=user.username,
                password_hash=password_hash,
                must_change_password=user.must_change_password,
                now_ms=stamp,
            )
        )
    await gw.writer.execute(partial(record_login, username=user.username, now_ms=stamp))
    token, current = await gw.sessions.create(
        user.username,
        user.role,
        must_change_password=user.must_change_password,
        password_hash=password_hash,
    )
    answer = {
        "token": token,
        "expires_at": int(current.expires_at * 1000),
        "user": {
            "username": user.username,
            "display_name": user.display_name,
            "role": user.role,
            "must_change_password": user.must_change_password,
        },
    }
    response = json_response(answer)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(current.expires_at - time.time()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
    )
    return response


@auth.post("/auth/logout")
async def logout() -> Response:
    await _deps().sessions.end(session())
    response = json_response({"status": "signed out"})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
    return response


@auth.get("/auth/status")
async def status() -> Response:
    return json_response({"authenticated": True, "session": _session_json(session())})


@auth.post("/auth/change-password")
async def change_password() -> Response:
    body = await read_body(ChangePasswordBody)
    gw = _deps()
    current = session()
    # The current password is checked like a sign-in's (throttled, one at a time, bounded), or a
    # stolen session would be a password oracle without limits.
    user = await _check_password(
        gw, current.username, body.current_password, request.remote_addr or "unknown"
    )
    if user is None:
        raise InvalidRequest("The current password is wrong.", code="invalid_current_password")
    try:
        check_new_password(body.new_password, username=user.username, current=body.current_password)
    except PasswordPolicyError as exc:
        raise InvalidRequest(str(exc), code="weak_password") from None
    password_hash = await gw.passwords.hash(body.new_password)
    await gw.writer.execute(
        partial(
            set_password,
            username=user.username,
            password_hash=password_hash,
            must_change_password=False,
            now_ms=now_ms(),
        )
    )
    await gw.sessions.update_user(
        user.username, must_change_password=False, password_hash=password_hash
    )
    ended = await gw.sessions.revoke_user(user.username, keep=current)
    await _deps().audit.record(
        "user.change_password", user.username, {"other_sessions_ended": ended}
    )
    return json_response({"status": "password changed", "other_sessions_ended": ended})


# -- users (admins) --------------------------------------------------------------------------------


@auth.get("/users")
async def users() -> Response:
    if not session().is_admin:
        raise PermissionDenied("Only admins see the users.", code="admin_required")
    rows = await _deps().reads.run(list_users)
    return json_response({"data": [user_json(user) for user in rows]})


@auth.post("/users")
async def new_user() -> Response:
    body = await read_body(NewUserBody)
    gw = _deps()
    one_time = body.password is None
    password = body.password if body.password is not None else generate_password()
    if not one_time:
        try:
            check_new_password(password, username=body.username)
        except PasswordPolicyError as exc:
            raise InvalidRequest(str(exc), code="weak_password") from None
    password_hash = await gw.passwords.hash(password)
    try:
        user = await gw.writer.execute(
            partial(
                create_user,
                username=body.username,
                password_hash=password_hash,
                role=body.role,
                display_name=body.display_name,
                must_change_password=one_time,
                now_ms=now_ms(),
            )
        )
    except UserExists:
        raise Conflict(f"A user named {body.username!r} exists.", code="user_exists") from None
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    await _deps().audit.record("user.create", user.username, {"role": user.role})
    answer = user_json(user)
    if one_time:
        answer["password"] = password  # shown once; the user must change it at first sign-in
    return json_response(answer, 201)


@auth.put("/users/<username>")
async def change_user(username: str) -> Response:
    body = await read_body(UserChangesBody)
    gw = _deps()
    try:
        user = await gw.writer.execute(
            partial(
                update_user,
                username=username,
                role=body.role if body.role is not None else UNCHANGED,
                display_name=body.display_name if body.display_name is not None else UNCHANGED,
                now_ms=now_ms(),
            )
        )
    except LookupError:
        raise NotFound(f"No user named {username!r}.", code="user_not_found") from None
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    answer = user_json(user)
    changes: dict[str, object] = {k: v for k, v in msgspec.structs.asdict(body).items() if v}
    if body.reset_password:
        password = generate_password()
        password_hash = await gw.passwords.hash(password)
        user = await gw.writer.execute(
            partial(
                set_password,
                username=user.username,
                password_hash=password_hash,
                must_change_password=True,
                now_ms=now_ms(),
            )
        )
        await gw.sessions.revoke_user(user.username)
        answer = user_json(user)
        answer["password"] = password
    await gw.sessions.update_user(user.username, role=user.role)
    await _deps().audit.record("user.update", user.username, changes)
    return json_response(answer)


@auth.delete("/users/<username>")
async def remove_user(username: str) -> Response:
    gw = _deps()
    if fold_username(username) == fold_username(session().username):
        raise InvalidRequest("You cannot delete yourself.", code="cannot_delete_self")
    try:
        await gw.writer.execute(partial(delete_user, username=username))
    except LookupError:
        raise NotFound(f"No user named {username!r}.", code="user_not_found") from None
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    ended = await gw.sessions.revoke_user(username)
    await _deps().audit.record("user.delete", username, {"sessions_ended": ended})
    return json_response({"status": "deleted", "username": username})
