"""The review panel in real QGIS on a real X display (Xvfb) against the real daemon on
the sample scene: open it on a round's suggestions, label 20 tiles with key presses
(one skip, one unusable, one undo among them), check that the canvas follows every
tile, that the daemon holds the 19 labels with the right classes, that labels queued
while the daemon is stopped survive unloading the plugin and arrive after it
restarts, and that the retrain loads suggestions without any labelled or unusable
tile. The key presses and mouse clicks it takes are counted.

Run under Xvfb: scripts/test_plugin.sh (xvfb-run -a, QT_QPA_PLATFORM=xcb)."""

import json
import os
import shutil
import socket
import sys
import tempfile
import unittest

from daemon_fixture import SAMPLE, require_binary, start_daemon, stop_daemon, use

import processing  # noqa: I001 (on the path once daemon_fixture has run)
from qgis.core import (
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QGuiApplication, QKeySequence
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QMainWindow

#: Inputs (key presses + mouse clicks) allowed to label 20 tiles, retrain included.
MAX_INPUTS = 25


class Daemon:
    """`nexttile serve` on a fixed loopback port and data folder, so it can be stopped
    and started again where the plugin expects it."""

    def __init__(self, port, data):
        self.proc, self.url = start_daemon(["--bind", f"127.0.0.1:{port}", "--root", os.path.dirname(SAMPLE), "--data-dir", data])

    def stop(self):
        stop_daemon(self.proc)


class MessageBar:
    def __init__(self):
        self.messages = []

    def pushMessage(self, title, text, level=0, duration=0):  # noqa: N802
        self.messages.append(text)


class Iface:
    """The QgisInterface calls the plugin makes, over a real main window and canvas."""

    def __init__(self, window, canvas):
        self.window, self.canvas, self.bar = window, canvas, MessageBar()

    def addDockWidget(self, area, dock):  # noqa: N802
        self.window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.window.removeDockWidget(dock)

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar


def wait_until(condition, timeout_ms=240_000, what="condition"):
    waited = 0
    while not condition():
        if waited > timeout_ms:
            raise AssertionError(f"timed out waiting for {what}")
        QTest.qWait(50)
        waited += 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReviewPanelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_binary()
        cls.tmp = tempfile.mkdtemp(prefix="nexttile-review-")
        cls.data = os.path.join(cls.tmp, "daemon")
        cls.port = free_port()
        cls.daemon = Daemon(cls.port, cls.data)
        use(cls.daemon.url)
        s = QgsSettings()
        cls.queue_file = os.path.join(cls.tmp, "profile", "nexttile", "pending_labels.json")
        s.setValue("nexttile/review/queue_file", cls.queue_file)
        s.setValue("nexttile/review/batch", 5)
        s.setValue("nexttile/review/margin_tiles", 2.0)
        s.remove("nexttile/review/keys")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        QgsSettings().remove("nexttile/review/queue_file")
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_label_twenty_tiles_with_the_keyboard(self):
        import nexttile
        from nexttile.client import DaemonClient
        from nexttile.dock import SUGGESTIONS_LAYER
        from nexttile.layers import style_suggestions

        self.assertEqual(QGuiApplication.platformName(), "xcb", "run under Xvfb (scripts/test_plugin.sh)")
        window = QMainWindow()
        canvas = QgsMapCanvas()
        window.setCentralWidget(canvas)
        window.resize(1400, 900)
        window.show()
        self.assertTrue(QTest.qWaitForWindowExposed(window))
        iface = Iface(window, canvas)
        plugin = nexttile.classFactory(iface)
        plugin.initGui()
        project = processing.run("nexttile:create_project", {"NAME": "review-test"})
        pid, classes = int(project["PROJECT"]), json.loads(project["CLASSES"])
        raster = QgsRasterLayer(SAMPLE, "Sentinel-2 (B04 B03 B02)")
        raster.setRenderer(QgsMultiBandColorRenderer(raster.dataProvider(), 4, 3, 2))
        raster.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
        processing.run("nexttile:score", {"PROJECT": pid, "RASTER": raster, "HEATMAP": os.path.join(self.tmp, "heat.tif")})
        out = processing.run("nexttile:suggest", {"PROJECT": pid, "STRATEGY_NAME": "auto", "BUDGET": 26, "MC_PASSES": 3,
                                                   "OUTPUT": os.path.join(self.tmp, "s.gpkg")})["OUTPUT"]
        suggestions = QgsVectorLayer(out, SUGGESTIONS_LAYER, "ogr")
        self.assertEqual(suggestions.featureCount(), 26)
        style_suggestions(suggestions, classes)
        QgsProject.instance().addMapLayers([raster, suggestions])
        canvas.setDestinationCrs(raster.crs())
        canvas.setLayers([suggestions, raster])
        canvas.setExtent(raster.extent())

        dock = plugin.dock
        dock.project.setText("review-test")
        dock.raster.setLayer(raster)
        dock.budget.setValue(20)
        dock.passes.setValue(3)

        inputs = 0  # key presses and mouse clicks the analyst makes
        QTest.mouseClick(dock.buttons["Review"], Qt.LeftButton)
        inputs += 1
        wait_until(lambda: dock.review is not None, what="the review panel")
        panel = dock.review.panel
        ctrl = panel.controller
        first_items = list(ctrl.items)
        self.assertEqual([i.rank for i in ctrl.items], list(range(1, 27)))
        # The buttons show the keys: the first classes on 1, 2, 3…
        self.assertEqual(panel.buttons[f"class:{classes[0]}"].text().split()[0], "1")
        self.assertEqual(panel.buttons["skip"].text().split()[0], "S")

        def press(action):
            QTest.keyClick(panel, Qt.Key(QKeySequence(ctrl.keys[action])[0]))

        def check_canvas_on_current(previous):
            item = ctrl.current()
            rect = panel.tile_rect(item, canvas.mapSettings().destinationCrs())
            ext = canvas.extent()
            self.assertTrue(ext.contains(rect), f"tile {item.tile_id} {rect.toString()} not in {ext.toString()}")
            self.assertAlmostEqual(ext.center().x(), rect.center().x(), delta=rect.width() * 0.05)
            self.assertAlmostEqual(ext.center().y(), rect.center().y(), delta=rect.height() * 0.05)
            # margin 2 tiles on each side: about 5 tiles across (the canvas keeps its aspect)
            self.assertLess(min(ext.width(), ext.height()), rect.width() * 6)
            self.assertGreater(max(ext.width(), ext.height()), rect.width() * 4)
            if previous is not None:
                self.assertNotEqual(ext.center().toString(), previous.center().toString(), "the canvas did not move")
            band = panel.band.asGeometry().boundingBox()
            for a, b in zip((band.xMinimum(), band.yMinimum(), band.xMaximum(), band.yMaximum()),
                            (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())):
                self.assertAlmostEqual(a, b, delta=1.0)  # the outline is the tile
            self.assertFalse(panel.preview.pixmap().isNull())
            self.assertIn(str(item.props.get("predicted_class")), panel.info.text())
            self.assertIn("strategy auto", panel.info.text())
            return ext

        def other_class(item):
            return next(c for c in classes if c != item.props.get("predicted_class"))

        expected = {}
        previous = None
        for n in range(20):
            previous = check_canvas_on_current(previous)
            item = ctrl.current()
            if n == 4:
                press("skip")
            elif n == 7:
                press("unusable")
                expected[item.tile_id] = "unusable"
            else:
                cls = item.props["predicted_class"] if n % 2 == 0 else other_class(item)
                press(f"class:{cls}")
                expected[item.tile_id] = cls
            inputs += 1
            if n == 10:
                # The analyst changes their mind: back, and the other answer.
                press("undo")
                inputs += 1
                self.assertEqual(ctrl.current().tile_id, item.tile_id)
                previous = check_canvas_on_current(None)
                cls = other_class(item) if expected[item.tile_id] == item.props["predicted_class"] else item.props["predicted_class"]
                press(f"class:{cls}")
                inputs += 1
                expected[item.tile_id] = cls
        self.assertEqual(len(expected), 19)
        self.assertEqual(ctrl.counts(), (18, 1, 1, 6))
        sender = plugin.sender
        wait_until(lambda: sender.pending() == 0 and sender.task is None, what="the labels to be delivered")
        stored = DaemonClient().get_labels(pid)["features"]
        self.assertEqual(len(stored), 19)
        self.assertEqual(self.by_tile(first_items, stored), expected)

        # Interrupted session: the daemon stops, five more answers wait on disk, the
        # plugin is unloaded; they arrive once the daemon is back and the plugin reconnects.
        self.daemon.stop()
        for n in range(5):
            item = ctrl.current()
            press(f"class:{classes[n % len(classes)]}")
            expected[item.tile_id] = classes[n % len(classes)]
        wait_until(lambda: sender.task is None and sender.offline, what="the failed delivery")
        self.assertEqual(sender.pending(), 5)
        plugin.unload()
        with open(self.queue_file, encoding="utf-8") as f:
            queued = json.load(f)["pending"]
        self.assertEqual(sorted(o["tile_id"] for o in queued), sorted(list(expected)[-5:]))
        self.__class__.daemon = Daemon(self.port, self.data)
        plugin = nexttile.classFactory(iface)
        plugin.initGui()
        dock = plugin.dock
        dock.project.setText("review-test")
        dock.raster.setLayer(raster)
        dock.budget.setValue(20)
        dock.passes.setValue(3)
        QTest.mouseClick(dock.buttons["Connect"], Qt.LeftButton)
        wait_until(lambda: plugin.sender.pending() == 0 and plugin.sender.task is None, what="the queued labels after restart")
        stored = DaemonClient().get_labels(pid)["features"]
        self.assertEqual(len(stored), 24)
        self.assertEqual(self.by_tile(first_items, stored), expected)

        # The round closes from the panel: R retrains and loads the next suggestions.
        QTest.mouseClick(dock.buttons["Review"], Qt.LeftButton)
        wait_until(lambda: dock.review is not None, what="the review panel")
        panel, ctrl = dock.review.panel, dock.review.panel.controller
        finished = []
        ctrl.round_finished.connect(finished.append)
        QTest.keyClick(panel, Qt.Key(QKeySequence(ctrl.keys["retrain"])[0]))
        inputs += 1  # for the first 20 tiles, Review + answers + undo + retrain
        wait_until(lambda: finished, what="the round")
        result = finished[0]
        self.assertEqual(result["round"], 1)
        self.assertEqual(result["retrained"]["labelled_tiles"], 23)  # the unusable tile is not trained on
        self.assertEqual(result["agreement"]["new_labels"], 24)
        self.assertEqual(result["agreement"]["added"]["unusable"], 1)
        new_ids = [i.tile_id for i in ctrl.items]
        self.assertEqual(len(new_ids), 20)
        for tile in expected:
            self.assertNotIn(tile, new_ids)
        layer = QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER)[0]
        self.assertEqual(sorted(f["tile_id"] for f in layer.getFeatures()), sorted(new_ids))
        check_canvas_on_current(None)
        self.assertEqual(len(panel.chart.rounds), 1)
        self.assertIn("Round 1: +24 labels", panel.history_text.text())
        print(f"\ninputs to label 20 tiles and retrain: {inputs}", file=sys.stderr)
        self.assertLessEqual(inputs, MAX_INPUTS)
        plugin.unload()
        window.close()

    @staticmethod
    def by_tile(items, labels):
        """{tile_id: class} of stored labels, each placed in the suggested tile it lies in."""
        from nexttile.review.controller import geometry_from_geojson

        out = {}
        for f in labels:
            point = geometry_from_geojson(f["geometry"])
            tiles = [i.tile_id for i in items if i.geometry.contains(point)]
            assert len(tiles) == 1, f"label {f['properties']} lies in {tiles}"
            assert tiles[0] not in out, f"two labels in tile {tiles[0]}"
            out[tiles[0]] = f["properties"]["class"]
        return out


if __name__ == "__main__":
    unittest.main()
