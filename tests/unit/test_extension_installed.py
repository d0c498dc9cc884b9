"""The workspace extension installs prebuilt: both of Jupyter's lists say it is OK (no Node at runtime)."""

import os
import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
# Node is needed to build the extension, never to run it: check with no Node on the PATH.
NO_NODE = {**os.environ, "PATH": str(BIN)}


def listing(*args: str) -> str:
    result = subprocess.run([str(BIN / "jupyter"), *args], capture_output=True, text=True, env=NO_NODE, timeout=120)
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)


def test_server_extension_is_enabled_and_valid():
    out = listing("server", "extension", "list")
    assert re.search(r"mlopshub_lab enabled", out), out
    assert re.search(r"mlopshub_lab \S+ OK", out), out


def test_labextension_is_prebuilt_enabled_and_ok():
    out = listing("labextension", "list")
    assert re.search(r"mlopshub-lab v\S+ enabled OK \(python, mlopshub-lab\)", out), out
