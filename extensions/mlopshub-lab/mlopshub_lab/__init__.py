"""mlopshub-lab: the mlopshub sidebar in JupyterLab and what it needs in the workspace."""

__version__ = "0.1.0"
