"""Sign-in: passwords on one machine (NativeAuthenticator), the bank's OIDC provider otherwise.

NativeAuthenticator hashes with bcrypt, which takes at most 72 bytes of a
password; bcrypt 5 raises on longer ones and the page would answer 500. The
handlers here refuse such a password up front with a message instead.
"""

from __future__ import annotations

from typing import Any

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import ChangePasswordHandler, LoginHandler, SignUpHandler

#: bcrypt uses at most this many bytes of a password.
MAX_PASSWORD_BYTES = 72
TOO_LONG = f"Passwords are limited to {MAX_PASSWORD_BYTES} bytes (UTF-8); please choose a shorter one."


def password_too_long(password: str | None) -> bool:
    """Whether bcrypt would refuse ``password``."""
    return password is not None and len(password.encode("utf-8")) > MAX_PASSWORD_BYTES


class BoundedLoginHandler(LoginHandler):
    """The login page, refusing over-long passwords with a message."""

    async def post(self) -> None:
        if password_too_long(self.get_body_argument("password", None, strip=False)):
            self.set_status(400)
            self.finish(await self._render(login_error=TOO_LONG, username=self.get_body_argument("username", "")))
            return
        await super().post()


class BoundedSignUpHandler(SignUpHandler):
    """The sign-up page, refusing over-long passwords with a message."""

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


class LocalAuthenticator(NativeAuthenticator):
    """Passwords kept by the hub, for one-machine mode.

    New users sign up at ``/hub/signup``; an admin authorizes them at
    ``/hub/authorize`` and adds them to their team's group. The first admin
    (``MLOPSHUB_ADMIN_USER``) is authorized when they sign up.
    """

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        replacements = {
            LoginHandler: BoundedLoginHandler,
            SignUpHandler: BoundedSignUpHandler,
            ChangePasswordHandler: BoundedChangePasswordHandler,
        }
        return [(route, replacements.get(handler, handler)) for route, handler in super().get_handlers(app)]

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        if password_too_long(data.get("password")):
            return None
        return await super().authenticate(handler, data)

    def create_user(self, username: str, password: str, **kwargs: Any) -> Any:
        if password_too_long(password):
            return None
        return super().create_user(username, password, **kwargs)
