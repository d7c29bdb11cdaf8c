"""`scripts/package_plugin.sh` builds a ZIP that installs as *Install from ZIP* does:
unzipped into the plugins folder of a fresh QGIS profile, QGIS's own plugin loader
(qgis.utils) finds it, reads its metadata, starts it (the Processing provider and its
algorithms appear) and unloads it. Runs in a separate QGIS process so nothing of the
source tree is on its path."""

import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

LOADER = r'''
import os, sys
profiles = sys.argv[1]
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from qgis.core import QgsApplication, QgsUserProfileManager
app = QgsApplication([], False)
app.initQgis()
manager = QgsUserProfileManager(profiles)
profile = manager.profileForName("default") if manager.profileExists("default") else None
if profile is None:
    manager.createUserProfile("default")
    profile = manager.profileForName("default")
plugins = os.path.join(profile.folder(), "python", "plugins")
sys.path.insert(0, plugins)
sys.path.insert(0, "/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
import qgis.utils
qgis.utils.plugin_paths = [plugins]
qgis.utils.updateAvailablePlugins()
assert "nexttile" in qgis.utils.available_plugins, qgis.utils.available_plugins
assert qgis.utils.pluginMetadata("nexttile", "name") == "NextTile"
assert qgis.utils.pluginMetadata("nexttile", "hasProcessingProvider") == "yes"

class Iface:
    def addDockWidget(self, area, dock): pass
    def removeDockWidget(self, dock): pass
    def messageBar(self): return None
    def mapCanvas(self): return None

qgis.utils.iface = Iface()
assert qgis.utils.loadPlugin("nexttile")
assert qgis.utils.startPlugin("nexttile")
module = sys.modules["nexttile"]
assert module.__file__.startswith(plugins), module.__file__
provider = QgsApplication.processingRegistry().providerById("nexttile")
ids = sorted(a.id() for a in provider.algorithms())
print("loaded", module.__file__, ids)
assert ids == ["nexttile:create_project", "nexttile:export", "nexttile:retrain",
               "nexttile:score", "nexttile:send_labels", "nexttile:suggest"], ids
assert qgis.utils.unloadPlugin("nexttile")
assert QgsApplication.processingRegistry().providerById("nexttile") is None
print("unloaded")
sys.stdout.flush()
os._exit(0)
'''


class PackageTest(unittest.TestCase):
    def test_zip_installs_into_a_fresh_profile(self):
        out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "package_plugin.sh")], capture_output=True, text=True, check=True)
        path = out.stdout.strip().splitlines()[-1]
        self.assertTrue(path.endswith("nexttile.zip"), out.stdout)
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        # One top folder, as Install from ZIP expects; code and metadata in, tests and caches out.
        self.assertEqual({n.split("/")[0] for n in names}, {"nexttile"})
        for needed in ("nexttile/__init__.py", "nexttile/metadata.txt", "nexttile/icon.svg",
                       "nexttile/review/panel.py", "nexttile/dock/view.py", "nexttile/dock/controller.py", "nexttile/processing/base.py", "nexttile/processing/suggest.py"):
            self.assertIn(needed, names)
        self.assertFalse([n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n], names)
        with tempfile.TemporaryDirectory() as profiles:
            plugins = os.path.join(profiles, "default", "python", "plugins")
            os.makedirs(plugins)
            with zipfile.ZipFile(path) as z:
                z.extractall(plugins)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            run = subprocess.run([sys.executable, "-c", LOADER, profiles], capture_output=True, text=True, env=env, cwd=profiles, timeout=300)
            self.assertEqual(run.returncode, 0, run.stdout[-3000:] + run.stderr[-3000:])
            self.assertIn("unloaded", run.stdout)
            self.assertIn(plugins, run.stdout)


if __name__ == "__main__":
    unittest.main()
