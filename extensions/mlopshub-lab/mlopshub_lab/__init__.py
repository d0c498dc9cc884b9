"""mlopshub-lab: the mlopshub sidebar in JupyterLab and what it needs in the workspace.

The Python package is a jupyter_server extension (REST API under
``/mlopshub-lab/``, see ``openapi.yaml``) and ships the prebuilt JupyterLab
extension in ``labextension/``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt frontend of this package."""
    return [{"src": "labextension", "dest": "mlopshub-lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """This module is the server extension (enabled by jupyter-config/server-config/mlopshub_lab.json)."""
    return [{"module": "mlopshub_lab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the REST handlers on the running Jupyter server."""
    # Imported here so that `import mlopshub_lab` (the MLflow lineage entry point, in every kernel) stays light.
    from .routes import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("mlopshub-lab: REST API registered under /mlopshub-lab/")
