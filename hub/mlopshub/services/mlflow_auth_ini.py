"""Complete the MLflow auth ini that the community MLflow chart writes, before the server reads it.

``python -m mlopshub.services.mlflow_auth_ini /config/auth_result.ini`` runs
as an init container after the chart's own ``ini-file-initializer``
(``initContainers`` in ``helm-values/platform/mlflow.yaml``). The chart's
template (1.11.5) writes ``default_permission``, ``database_uri``, the admin
account and ``authorization_function`` only; mlopshub needs, in addition:

* ``grant_default_workspace_access = false``: a user sees a team's MLflow
  workspace only through the team's role (:mod:`mlopshub.services.mlflow_auth`);
* the auth store in PostgreSQL: the chart falls back to ``sqlite:///basic_auth.db``
  inside the pod (lost at each restart, one per replica) unless
  ``auth.postgres`` is set, so such an ini is refused here and the pod does not start.

The file holds database and admin passwords: nothing of it is printed.
"""

from __future__ import annotations

import configparser
import io
import sys
from pathlib import Path

SECTION = "mlflow"
#: What mlopshub sets in MLflow's auth config, whatever the chart wrote.
REQUIRED_OPTIONS = {"grant_default_workspace_access": "false"}
#: Auth stores that outlive the pod and are shared by its replicas.
DURABLE_SCHEMES = ("postgresql", "mysql", "mssql")


class AuthIniError(ValueError):
    """The ini cannot be used as mlopshub's MLflow auth config; the message says why and what to set."""


def complete(text: str, where: str = "the auth ini") -> str:
    """``text`` with :data:`REQUIRED_OPTIONS` set; :class:`AuthIniError` if its auth store would not last."""
    # MLflow reads the file with ConfigParser's default ('%' interpolation): read it the same way.
    config = configparser.ConfigParser()
    try:
        config.read_string(text, source=where)
        for option in config.options(SECTION) if config.has_section(SECTION) else []:
            config.get(SECTION, option)
    except configparser.InterpolationError as error:
        raise AuthIniError(
            f"{where}: the value of {error.option} has a '%', which MLflow's ini parser refuses; use a password "
            "without '%' (and without '/', '@', ':', which the chart and the database URI do not escape), "
            "e.g. `openssl rand -hex 24`"
        ) from None
    except configparser.Error as error:
        raise AuthIniError(f"{where}: not a valid ini file ({type(error).__name__})") from None
    if not config.has_section(SECTION):
        raise AuthIniError(f"{where}: no [{SECTION}] section; the chart's auth.enabled must be true")
    uri = config.get(SECTION, "database_uri", fallback="")
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in DURABLE_SCHEMES:
        raise AuthIniError(
            f"{where}: database_uri is a {scheme or 'missing'} store, lost when the pod restarts; set "
            "auth.postgres (host, database, existingSecret) in helm-values/platform/mlflow.yaml"
        )
    for option, value in REQUIRED_OPTIONS.items():
        config.set(SECTION, option, value)
    out = io.StringIO()
    config.write(out)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Rewrite the ini at ``argv[0]`` in place (the server starts only if this succeeds)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mlopshub.services.mlflow_auth_ini <path of the auth ini>", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        completed = complete(path.read_text(), str(path))
    except (OSError, AuthIniError) as error:
        print(f"mlopshub: {error}", file=sys.stderr)
        return 1
    path.write_text(completed)
    print(f"mlopshub: {path}: set {', '.join(f'{k} = {v}' for k, v in REQUIRED_OPTIONS.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
