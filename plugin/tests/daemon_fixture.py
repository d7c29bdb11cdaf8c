"""What the plugin tests share: the plugin and QGIS's Processing on the path, one QGIS
application (headless unless QT_QPA_PLATFORM says otherwise), the sample scene, and
the real daemon binary started on a loopback port (`start_daemon`)."""

import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "plugin"))
sys.path.insert(0, "/usr/share/qgis/python/plugins")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsSettings  # noqa: E402
from qgis.testing import start_app  # noqa: E402

APP = start_app()

from processing.core.Processing import Processing  # noqa: E402

Processing.initialize()

SAMPLE = os.path.join(ROOT, "samples", "chincoteague_s2.tif")
BIN = os.environ.get("NEXTTILE_BIN", os.path.join(ROOT, "target", "debug", "nexttile"))


def require_binary():
    if not os.path.isfile(BIN):
        raise RuntimeError(f"{BIN} is missing: build it with cargo build")


def start_daemon(args):
    """`nexttile serve ARGS` (the caller's bind, roots and data folder; no token, roots
    or model roots from the environment). Returns (process, url) once it listens."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEXTTILE_TOKEN", "NEXTTILE_ROOTS", "NEXTTILE_MODEL_ROOTS")}
    proc = subprocess.Popen([BIN, "serve", *args], stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()
    m = re.match(r"listening on (http://\S+)", line)
    if not m:
        stop_daemon(proc)
        raise RuntimeError(f"daemon did not start: {line!r}")
    return proc, m.group(1)


def stop_daemon(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def use(url, token=""):
    """Points the plugin at a daemon (the settings the dock's Connect saves)."""
    s = QgsSettings()
    s.setValue("nexttile/url", url)
    s.setValue("nexttile/token", token)
