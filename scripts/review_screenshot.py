"""Screenshot of the NextTile review panel mid-round, for the docs (docs/review-panel.png).

Starts the daemon on a free port, scores the sample and asks for suggestions through
the plugin, opens the review panel beside a map canvas, answers a first round with key
presses (as an analyst would), retrains with R, answers three tiles of the second round
and saves the window. Run: xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/python3
scripts/review_screenshot.py"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "plugin"))
sys.path.insert(0, "/usr/share/qgis/python/plugins")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsSettings,
    QgsVectorLayer,
)

app = QgsApplication([], True)
app.initQgis()

import processing  # noqa: E402
from processing.core.Processing import Processing  # noqa: E402
from qgis.gui import QgsMapCanvas  # noqa: E402
from qgis.PyQt.QtCore import Qt  # noqa: E402
from qgis.PyQt.QtGui import QKeySequence  # noqa: E402
from qgis.PyQt.QtTest import QTest  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow  # noqa: E402

Processing.initialize()


class Bar:
    def pushMessage(self, *args, **kwargs):  # noqa: N802
        print("message:", args[1] if len(args) > 1 else args)


class Iface:
    def __init__(self, window, canvas):
        self.window, self.canvas = window, canvas

    def addDockWidget(self, area, dock):  # noqa: N802
        self.window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.window.removeDockWidget(dock)

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return Bar()


def wait_until(condition, timeout_ms=600_000):
    waited = 0
    while not condition():
        if waited > timeout_ms:
            raise SystemExit("timed out")
        QTest.qWait(50)
        waited += 50


sample = os.path.join(ROOT, "samples", "chincoteague_s2.tif")
data = tempfile.mkdtemp()
daemon = subprocess.Popen(
    [os.path.join(ROOT, "target", "debug", "nexttile"), "serve", "--bind", "127.0.0.1:0", "--root", os.path.dirname(sample), "--data-dir", data],
    stdout=subprocess.PIPE,
    text=True,
)
try:
    url = re.match(r"listening on (\S+)", daemon.stdout.readline()).group(1)
    s = QgsSettings()
    s.setValue("nexttile/url", url)
    s.setValue("nexttile/token", "")
    s.setValue("nexttile/review/queue_file", os.path.join(data, "pending_labels.json"))
    s.setValue("nexttile/review/auto_retrain", False)
    window = QMainWindow()
    window.setWindowTitle("NextTile review in QGIS")
    canvas = QgsMapCanvas()
    window.setCentralWidget(canvas)
    window.resize(1500, 900)
    window.show()
    import nexttile
    from nexttile.dock import SUGGESTIONS_LAYER
    from nexttile.layers import style_suggestions

    plugin = nexttile.classFactory(Iface(window, canvas))
    plugin.initGui()
    plugin.dock.hide()  # the screenshot shows the review dock only
    project = processing.run("nexttile:create_project", {"NAME": "chincoteague"})
    classes = json.loads(project["CLASSES"])
    scene = QgsRasterLayer(sample, "Sentinel-2 L1C (B04 B03 B02)")
    scene.setRenderer(QgsMultiBandColorRenderer(scene.dataProvider(), 4, 3, 2))
    scene.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    processing.run("nexttile:score", {"PROJECT": project["PROJECT"], "RASTER": scene, "HEATMAP": os.path.join(data, "heatmap.tif")})
    sugg = processing.run("nexttile:suggest", {"PROJECT": project["PROJECT"], "STRATEGY_NAME": "auto", "BUDGET": 12,
                                                "MC_PASSES": 5, "OUTPUT": os.path.join(data, "s.gpkg")})
    layer = QgsVectorLayer(sugg["OUTPUT"], SUGGESTIONS_LAYER, "ogr")
    style_suggestions(layer, classes)
    QgsProject.instance().addMapLayers([scene, layer])
    canvas.setDestinationCrs(scene.crs())
    canvas.setLayers([scene])
    canvas.setExtent(scene.extent())
    dock = plugin.dock
    dock.project.setText("chincoteague")
    dock.raster.setLayer(scene)
    dock.budget.setValue(12)
    dock.passes.setValue(5)
    dock.controller.open_review()
    wait_until(lambda: dock.review is not None)
    panel = dock.review.panel
    ctrl = panel.controller

    def press(action):
        QTest.keyClick(panel, Qt.Key(QKeySequence(ctrl.keys[action])[0]))

    # Round 1: the analyst answers with the predicted class mostly, one unusable tile.
    for n in range(10):
        item = ctrl.current()
        if n == 3:
            press("unusable")
        elif n == 6:
            press("skip")
        else:
            predicted = item.props.get("predicted_class")
            press(f"class:{predicted if n % 3 else classes[(classes.index(predicted) + 1) % len(classes)]}")
    wait_until(lambda: plugin.sender.pending() == 0 and plugin.sender.task is None)
    press("retrain")
    wait_until(lambda: not ctrl.busy and ctrl.rounds)
    # Round 2, three tiles in.
    for n in range(3):
        press(f"class:{ctrl.current().props.get('predicted_class')}")
    wait_until(lambda: plugin.sender.pending() == 0 and plugin.sender.task is None)
    dock.review.resize(560, 900)
    window.resizeDocks([dock.review], [560], Qt.Horizontal)
    canvas.refreshAllLayers()
    canvas.waitWhileRendering()
    app.processEvents()
    QTest.qWait(500)
    canvas.waitWhileRendering()
    out = os.path.join(ROOT, "docs", "review-panel.png")
    window.grab().save(out)
    print(out)
    plugin.unload()
finally:
    daemon.kill()
    daemon.stdout.close()
