"""Sign-in: passwords on one machine (NativeAuthenticator), the bank's OIDC provider otherwise.

NativeAuthenticator hashes with bcrypt, which takes at most 72 bytes of a
password; bcrypt 5 raises on longer ones and the page would answer 500. The
handlers here refuse such a password up front with a message instead, name the
rule a refused sign-up broke, and make an authorized sign-up a hub user at once
(NativeAuthenticator keeps sign-ups apart; the hub knew a user only after a
first sign-in, so an admin could not put them in a team before).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import maybe_future, url_path_join
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import (
    ChangePasswordHandler,
    LoginHandler,
    SignUpHandler,
    ToggleAuthorizationHandler,
)
from nativeauthenticator.orm import UserInfo
from tornado import web

#: bcrypt uses at most this many bytes of a password.
MAX_PASSWORD_BYTES = 72
TOO_LONG = f"Passwords are limited to {MAX_PASSWORD_BYTES} bytes (UTF-8); please choose a shorter one."


def password_too_long(password: str | None) -> bool:
    """Whether bcrypt would refuse ``password``."""
    return password is not None and len(password.encode("utf-8")) > MAX_PASSWORD_BYTES


class BoundedLoginHandler(LoginHandler):
    """The login page, refusing over-long passwords, and saying when a name is blocked after failed sign-ins."""

    async def post(self) -> None:
        username = self.get_body_argument("username", "")
        if password_too_long(self.get_body_argument("password", None, strip=False)):
            self.set_status(400)
            self.finish(await self._render(login_error=TOO_LONG, username=username))
            return
        wait = self.authenticator.seconds_blocked(username)
        if wait:
            self.set_status(429)
            self.set_header("Retry-After", str(wait))
            message = (
                f"Too many failed sign-ins for this name: sign-in is blocked for {wait} more second"
                f"{'s' if wait != 1 else ''}. Wait, then try again (ask an admin if you forgot the password)."
            )
            self.finish(await self._render(login_error=message, username=username))
            return
        await super().post()


async def ensure_hub_user(handler: Any, name: str) -> None:
    """Make the authorized sign-up ``name`` a hub user, as a first sign-in would (then groups can take them)."""
    info = handler.authenticator.get_user(name)
    if info is None or not info.is_authorized or handler.find_user(info.username) is not None:
        return
    user = handler.user_from_username(info.username)
    await maybe_future(handler.authenticator.add_user(user))
    handler.log.info("authorized sign-up %s is now a hub user", info.username)


class BoundedSignUpHandler(SignUpHandler):
    """The sign-up page: refuses over-long passwords, names the rule a refused sign-up broke, and makes an
    account authorized at sign-up (the first admin) a hub user."""

    def get_result_message(
        self,
        user: Any,
        assume_user_is_human: bool,
        username_already_taken: bool,
        confirmation_matches: bool,
        user_is_admin: bool,
    ) -> tuple[str, str]:
        alert, message = super().get_result_message(
            user, assume_user_is_human, username_already_taken, confirmation_matches, user_is_admin
        )
        if user is None and assume_user_is_human and not username_already_taken and confirmation_matches:
            # NativeAuthenticator lists every rule here; say which ones this sign-up broke.
            problems = self.authenticator.signup_problems(
                self.get_body_argument("username", "", strip=False),
                self.get_body_argument("signup_password", "", strip=False),
            )
            if problems:
                self.set_status(400)
                message = " ".join(problems)
        return alert, message

    async def post(self) -> None:
        if password_too_long(self.get_body_argument("signup_password", None, strip=False)):
            self.set_status(400)
            html = await self.render_template(
                "signup.html",
                ask_email=self.authenticator.ask_email_on_signup,
                result_message=TOO_LONG,
                alert="alert-danger",
                two_factor_auth=self.authenticator.allow_2fa,
                two_factor_auth_user=False,
                two_factor_auth_value="",
                recaptcha_key=self.authenticator.recaptcha_key,
                tos=self.authenticator.tos,
            )
            self.finish(html)
            return
        await super().post()
        await ensure_hub_user(self, self.get_body_argument("username", "", strip=False))


class AuthorizeHandler(ToggleAuthorizationHandler):
    """``/hub/authorize/<name>``: toggles the sign-up's authorization; one just authorized becomes a hub user."""

    @needs_scope("admin:users")
    async def get(self, slug: str) -> None:
        if self.authenticator.get_user(slug) is None:
            raise web.HTTPError(404, f"No one signed up as {slug!r}")
        info = UserInfo.change_authorization(self.db, self.authenticator.normalize_username(slug))
        if info.is_authorized:
            await ensure_hub_user(self, info.username)
        self.redirect(self.hub.base_url + "authorize#" + slug)


class BoundedChangePasswordHandler(ChangePasswordHandler):
    """The change-password page, refusing over-long new passwords with a message."""

    async def post(self) -> None:
        new = self.get_body_argument("new_password", None, strip=False)
        if password_too_long(new):
            self.set_status(400)
            html = await self.render_template(
                "change-password.html", user_name=self.current_user.name, result_message=TOO_LONG, alert="alert-danger"
            )
            self.finish(html)
            return
        await super().post()


#: The cookie through which a browser reaches the MLflow UI with the workspace's token (the Lab extension sets it).
MLFLOW_TOKEN_COOKIE = "mlopshub-mlflow-token"


class SignOutHandler(LogoutHandler):
    """JupyterHub's sign-out, which also ends the browser's access to the MLflow UI.

    The MLflow UI cookie is set for ``/services/mlflow/`` only, so JupyterHub's
    own logout does not clear it, and MLflow kept answering after sign-out.
    """

    async def handle_logout(self) -> None:
        self.clear_cookie(MLFLOW_TOKEN_COOKIE, path=url_path_join(self.base_url, "services/mlflow/"))
        await super().handle_logout()


def sign_out_handlers() -> list[tuple[str, Any]]:
    """The handlers every mlopshub authenticator puts before JupyterHub's own (``get_handlers`` comes first)."""
    return [(r"/logout", SignOutHandler)]


class LocalAuthenticator(NativeAuthenticator):
    """Passwords kept by the hub, for one-machine mode.

    New users sign up at ``/hub/signup``; an admin authorizes them at
    ``/hub/authorize`` (which makes them hub users) and adds them to their
    team's group. The first admin (``MLOPSHUB_ADMIN_USER``) is authorized when
    they sign up.
    """

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        replacements = {
            LoginHandler: BoundedLoginHandler,
            SignUpHandler: BoundedSignUpHandler,
            ToggleAuthorizationHandler: AuthorizeHandler,
            ChangePasswordHandler: BoundedChangePasswordHandler,
        }
        native = [(route, replacements.get(handler, handler)) for route, handler in super().get_handlers(app)]
        return [*sign_out_handlers(), *native]

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        if password_too_long(data.get("password")):
            return None
        username = await super().authenticate(handler, data)
        name = self.normalize_username(data["username"])
        if username is None and self.allowed_failed_logins and not self.get_user(name):
            # Names nobody has count failed attempts too: a block must not tell which names exist.
            self.add_login_attempt(name)
        return username

    def seconds_blocked(self, username: str) -> int:
        """Seconds until ``username`` may try to sign in again after too many failures (0: not blocked)."""
        name = self.normalize_username(username)
        if not (self.allowed_failed_logins and name and self.is_blocked(name)):
            return 0
        elapsed = (datetime.now() - self.login_attempts[name]["time"]).total_seconds()
        return max(1, math.ceil(self.seconds_before_next_try - elapsed))

    def signup_problems(self, username: str, password: str) -> list[str]:
        """The rules a sign-up breaks, one sentence each (empty: none of these)."""
        problems = []
        if not self.validate_username(self.normalize_username(username)):
            problems.append("A user name may not be empty or contain spaces, commas or slashes.")
        if len(password) < self.minimum_password_length:
            problems.append(
                f"The password has {len(password)} characters; it needs at least {self.minimum_password_length}."
            )
        if self.check_common_password and self.is_password_common(password):
            problems.append("The password is one of the most common ones; choose another.")
        return problems

    def create_user(self, username: str, password: str, **kwargs: Any) -> Any:
        if password_too_long(password):
            return None
        return super().create_user(username, password, **kwargs)
