"""JupyterHub config for mlopshub: everything lives in the mlopshub package."""

import mlopshub

mlopshub.configure(c)  # noqa: F821 (c is provided by JupyterHub)
