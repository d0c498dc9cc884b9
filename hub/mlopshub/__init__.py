"""mlopshub: a JupyterHub distribution for a bank's data science teams."""

from .configure import configure

__version__ = "0.1.0"
__all__ = ["__version__", "configure"]
