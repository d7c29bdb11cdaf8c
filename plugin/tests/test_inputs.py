"""Issue 14 in the plugin, in real QGIS against the real daemon: the dock offers the
sensor presets and resampling and sends them with Score; the scoring job's input
warnings (here: an 8-bit RGB image fed with the encoder's reflectance scale) come
back from `nexttile:score` as WARNINGS and stand in the message bar.

Run: scripts/test_plugin.sh (all plugin tests), or this file alone under Xvfb:
xvfb-run -a /usr/bin/python3 -m unittest discover -s plugin/tests -p test_inputs.py"""

import json
import os
import shutil
import tempfile
import unittest

from daemon_fixture import SAMPLE, require_binary, start_daemon, stop_daemon, use

import processing  # noqa: I001 (on the path once daemon_fixture has run)
from osgeo import gdal
from qgis.core import Qgis, QgsProject, QgsRasterLayer
from qgis.PyQt.QtTest import QTest

EIGHT_BIT = "8-bit display image"


class MessageBar:
    def __init__(self):
        self.messages = []

    def pushMessage(self, title, text, level=0, duration=0):  # noqa: N802
        self.messages.append((text, level, duration))


class Iface:
    """The QgisInterface calls the plugin makes, headless, with a message bar."""

    def __init__(self):
        self.docks, self.bar = [], MessageBar()

    def addDockWidget(self, area, dock):  # noqa: N802
        self.docks.append(dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.docks.remove(dock)

    def messageBar(self):  # noqa: N802
        return self.bar


def wait_until(condition, what, timeout_ms=240_000):
    waited = 0
    while not condition():
        if waited > timeout_ms:
            raise AssertionError(f"timed out waiting for {what}")
        QTest.qWait(50)
        waited += 50


class InputsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_binary()
        import nexttile

        cls.tmp = tempfile.mkdtemp(prefix="nexttile-inputs-")
        # The sample's true-colour bands stretched to 8 bits, colour interpretation
        # red/green/blue: an orthophoto as an analyst has it.
        cls.rgb8 = os.path.join(cls.tmp, "rgb8.tif")
        gdal.Translate(cls.rgb8, SAMPLE, options="-srcwin 0 0 640 640 -b 4 -b 3 -b 2 -ot Byte "
                                                 "-scale 0 2800 0 255 -colorinterp red,green,blue")
        cls.proc, url = start_daemon(["--bind", "127.0.0.1:0", "--root", os.path.dirname(SAMPLE),
                                      "--root", cls.tmp, "--data-dir", os.path.join(cls.tmp, "data")])
        use(url)
        cls.iface = Iface()
        cls.plugin = nexttile.classFactory(cls.iface)
        cls.plugin.initGui()

    @classmethod
    def tearDownClass(cls):
        cls.plugin.unload()
        stop_daemon(cls.proc)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_score_returns_the_input_warnings_and_takes_a_sensor(self):
        from nexttile.client import DaemonClient
        from nexttile.processing.score import SENSORS

        pid = int(processing.run("nexttile:create_project", {"NAME": "inputs-alg"})["PROJECT"])
        layer = QgsRasterLayer(self.rgb8, "rgb8")
        self.assertTrue(layer.isValid())
        plain = processing.run("nexttile:score", {"PROJECT": pid, "RASTER": layer, "HEATMAP": "TEMPORARY_OUTPUT"})
        warnings = json.loads(plain["WARNINGS"])
        self.assertTrue(any(EIGHT_BIT in w and "--sensor rgb" in w for w in warnings), warnings)
        rgb = processing.run("nexttile:score", {"PROJECT": pid, "RASTER": layer, "SENSOR": SENSORS.index("rgb") + 1,
                                                "RESAMPLE": "off", "HEATMAP": "TEMPORARY_OUTPUT"})
        rgb_warnings = json.loads(rgb["WARNINGS"])
        self.assertFalse(any(EIGHT_BIT in w for w in rgb_warnings), rgb_warnings)
        self.assertTrue(any("colour-stretched approximation" in w for w in rgb_warnings), rgb_warnings)
        scenes = DaemonClient().get_json(f"/projects/{pid}/scenes")
        self.assertEqual(scenes[0]["input"], {})
        self.assertEqual(scenes[1]["input"], {"sensor": "rgb", "resample": "off"})

    def test_the_dock_sends_sensor_and_resampling_and_shows_the_warnings(self):
        dock = self.iface.docks[0]
        self.assertEqual([dock.sensor.itemText(i) for i in range(dock.sensor.count())][1:],
                         ["s2-l1c", "s2-l2a", "landsat8", "landsat9", "landsat7", "reflectance", "rgb"])
        dock.resample.setEditText("30")
        dock.sensor.setCurrentIndex(7)
        form = dock.form()
        self.assertEqual((form.sensor, form.resample), (7, "30"))

        # Score from the dock with the defaults: the 8-bit warning stands in the bar.
        layer = QgsRasterLayer(self.rgb8, "rgb8-dock")
        QgsProject.instance().addMapLayer(layer)
        dock.raster.setLayer(layer)
        dock.sensor.setCurrentIndex(0)
        dock.resample.setEditText("auto")
        dock.project.setText("inputs-dock")
        bar = self.iface.bar
        bar.messages.clear()
        dock.controller.score()
        wait_until(lambda: any("scored" in m for m, _, _ in bar.messages) or
                   any(level == Qgis.Critical for _, level, _ in bar.messages), "the dock's Score")
        eight_bit = [(m, level, d) for m, level, d in bar.messages if EIGHT_BIT in m]
        self.assertEqual(len(eight_bit), 1, bar.messages)
        self.assertEqual(eight_bit[0][1], Qgis.Warning)
        self.assertEqual(eight_bit[0][2], 0, "an input warning stays until closed")
        QgsProject.instance().removeAllMapLayers()


if __name__ == "__main__":
    unittest.main()
