"""Screenshot of the NextTile dock and its layers over the sample scene, for the README.

Starts the daemon on a free port, scores the sample and asks for suggestions through
the plugin's Processing algorithms, shows the dock beside a map canvas (true colour +
uncertainty heatmap + suggestions by rank) in a window, and saves docs/plugin.png.
Run: xvfb-run -a /usr/bin/python3 scripts/plugin_screenshot.py  (or with
QT_QPA_PLATFORM=offscreen)."""

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
from qgis.PyQt.QtWidgets import QMainWindow  # noqa: E402

Processing.initialize()
from nexttile.dock import SUGGESTIONS_LAYER, NextTileDock  # noqa: E402
from nexttile.layers import heatmap_layer, style_suggestions  # noqa: E402
from nexttile.provider import NextTileProvider  # noqa: E402

PROVIDER = NextTileProvider()
QgsApplication.processingRegistry().addProvider(PROVIDER)
sample = os.path.join(ROOT, "samples", "chincoteague_s2.tif")
data = tempfile.mkdtemp()
daemon = subprocess.Popen(
    [os.path.join(ROOT, "target", "debug", "nexttile"), "serve", "--bind", "127.0.0.1:0", "--root", os.path.dirname(sample), "--data-dir", data],
    stdout=subprocess.PIPE,
    text=True,
)
try:
    url = re.match(r"listening on (\S+)", daemon.stdout.readline()).group(1)
    QgsSettings().setValue("nexttile/url", url)
    QgsSettings().setValue("nexttile/token", "")
    project = processing.run("nexttile:create_project", {"NAME": "chincoteague"})
    scene = QgsRasterLayer(sample, "Sentinel-2 L1C (B04 B03 B02)")
    scene.setRenderer(QgsMultiBandColorRenderer(scene.dataProvider(), 4, 3, 2))
    scene.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    scored = processing.run("nexttile:score", {"PROJECT": project["PROJECT"], "RASTER": scene, "HEATMAP": os.path.join(data, "heatmap.tif")})
    heat = heatmap_layer(scored["HEATMAP"])
    heat.renderer().setOpacity(0.55)
    sugg = processing.run("nexttile:suggest", {"PROJECT": project["PROJECT"], "BUDGET": 20, "OUTPUT": os.path.join(data, "s.gpkg")})
    layer = QgsVectorLayer(sugg["OUTPUT"], SUGGESTIONS_LAYER, "ogr")
    import json

    style_suggestions(layer, json.loads(project["CLASSES"]))
    for lyr in (scene, heat, layer):
        QgsProject.instance().addMapLayer(lyr)

    class Iface:
        def messageBar(self):  # noqa: N802
            return None

    window = QMainWindow()
    window.setWindowTitle("NextTile in QGIS")
    canvas = QgsMapCanvas()
    canvas.setDestinationCrs(scene.crs())
    canvas.setLayers([layer, heat, scene])
    canvas.setExtent(scene.extent())
    window.setCentralWidget(canvas)
    dock = NextTileDock(Iface())
    dock.url.setText(url)
    dock.project.setText("chincoteague")
    from nexttile.client import DaemonClient

    h = DaemonClient().health()  # what the dock's Connect button shows
    dock.status.setText(f"nexttile {h.get('version')} on {h.get('provider')} ({h.get('provider_reason')})")
    dock.raster.setLayer(scene)
    window.addDockWidget(Qt.RightDockWidgetArea, dock)
    window.resize(1280, 760)
    window.show()
    canvas.refreshAllLayers()
    canvas.waitWhileRendering()
    app.processEvents()
    canvas.waitWhileRendering()
    out = os.path.join(ROOT, "docs", "plugin.png")
    window.grab().save(out)
    print(out)
finally:
    daemon.kill()
