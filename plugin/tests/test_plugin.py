"""The plugin in real QGIS (Debian python3-qgis, headless) against the real daemon
binary on a free loopback port, scoring the real sample scene.

Run with Debian's interpreter under Xvfb: xvfb-run -a /usr/bin/python3
plugin/tests/run.py (scripts/test_plugin.sh does it; QT_QPA_PLATFORM=offscreen works
for this module, not for test_review.py)."""

import json
import os
import shutil
import tempfile
import unittest

from daemon_fixture import BIN, ROOT, SAMPLE, require_binary, start_daemon, stop_daemon, use

import processing  # noqa: I001 (on the path once daemon_fixture has run)
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

SHARED = os.environ.get("NEXTTILE_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))


class Daemon:
    """`nexttile serve` on a free port with the samples folder as raster root."""

    def __init__(self, token=None, roots=()):
        self.data = tempfile.mkdtemp(prefix="nexttile-plugin-")
        args = ["--bind", "127.0.0.1:0", "--root", os.path.dirname(SAMPLE), "--data-dir", self.data,
                # the test fixtures' models, besides the shipped onnx/ folder
                "--model-root", os.path.join(ROOT, "tests", "fixtures")]
        for r in roots:
            args += ["--root", r]
        if token:
            args += ["--token", token]
        self.proc, self.url = start_daemon(args)

    def stop(self):
        stop_daemon(self.proc)
        shutil.rmtree(self.data, ignore_errors=True)


class _Iface:
    """The few QgisInterface calls the plugin makes, for a headless run."""

    def __init__(self):
        self.docks = []

    def addDockWidget(self, area, dock):  # noqa: N802
        self.docks.append(dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.docks.remove(dock)

    def messageBar(self):  # noqa: N802
        return None


class PluginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_binary()
        import nexttile

        cls.iface = _Iface()
        cls.plugin = nexttile.classFactory(cls.iface)
        cls.plugin.initGui()
        cls.daemon = Daemon()
        use(cls.daemon.url)

    @classmethod
    def tearDownClass(cls):
        cls.plugin.unload()
        cls.daemon.stop()

    def test_loop_score_suggest_label_retrain(self):
        from qgis.core import QgsApplication

        self.assertIsNotNone(QgsApplication.processingRegistry().providerById("nexttile"))
        self.assertEqual(len(self.iface.docks), 1)
        project = processing.run("nexttile:create_project", {"NAME": "plugin-test"})
        pid = int(project["PROJECT"])
        classes = json.loads(project["CLASSES"])
        out_dir = tempfile.mkdtemp()
        raster = QgsRasterLayer(SAMPLE, "sample")
        self.assertTrue(raster.isValid())
        scored = processing.run(
            "nexttile:score",
            {"PROJECT": pid, "RASTER": raster, "HEATMAP": os.path.join(out_dir, "heatmap.tif")},
        )
        from nexttile.layers import class_layer, heatmap_layer

        classes_layer = class_layer(scored["HEATMAP"], classes)
        self.assertTrue(classes_layer.isValid())
        self.assertEqual(classes_layer.renderer().type(), "paletted")
        self.assertEqual(len(classes_layer.renderer().classes()), len(classes))
        heat = heatmap_layer(scored["HEATMAP"])
        self.assertTrue(heat.isValid())
        self.assertEqual(heat.crs().authid(), "EPSG:32618")
        self.assertEqual(heat.crs(), raster.crs())

        params = {"PROJECT": pid, "STRATEGY": 1, "BUDGET": 12, "MC_PASSES": 5, "OUTPUT": os.path.join(out_dir, "s1.gpkg")}
        first = QgsVectorLayer(processing.run("nexttile:suggest", params)["OUTPUT"], "s1", "ogr")
        self.assertTrue(first.isValid())
        self.assertEqual(first.featureCount(), 12)
        self.assertEqual(first.crs().authid(), "EPSG:4326")
        to_wgs84 = QgsCoordinateTransform(raster.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
        scene_extent = to_wgs84.transformBoundingBox(raster.extent())
        scene_extent.grow(1e-6)
        self.assertTrue(scene_extent.contains(first.extent()), f"{first.extent().toString()} not in {scene_extent.toString()}")

        # The default strategy, by name as the dock sends it: auto, whose first picks
        # (no labels yet) come from its TypiClust stage and say which cluster they stand for.
        params_auto = dict(params, STRATEGY_NAME="auto", OUTPUT=os.path.join(out_dir, "auto.gpkg"))
        auto = QgsVectorLayer(processing.run("nexttile:suggest", params_auto)["OUTPUT"], "auto", "ogr")
        self.assertEqual(auto.featureCount(), 12)
        feats = list(auto.getFeatures())
        self.assertEqual({f["strategy"] for f in feats}, {"auto"})
        self.assertEqual({f["stage"] for f in feats}, {"low_budget"})
        self.assertEqual(len({f["cluster"] for f in feats}), 12)

        # Styled as the dock loads it: graduated by rank, `class` edited with a value map.
        from nexttile.layers import style_suggestions

        style_suggestions(first, classes)
        self.assertEqual(first.renderer().type(), "graduatedSymbol")
        self.assertEqual(first.renderer().classAttribute(), "rank")
        setup = first.editorWidgetSetup(first.fields().indexOf("class"))
        self.assertEqual(setup.type(), "ValueMap")
        self.assertEqual(len(setup.config()["map"]), len(classes))

        # The analyst fills the class of five suggestions and sends them.
        first.startEditing()
        idx = first.fields().indexOf("class")
        labelled = []
        for n, f in enumerate(first.getFeatures()):
            if n >= 5:
                break
            first.changeAttributeValue(f.id(), idx, classes[n % 3])
            labelled.append(f["tile_id"])
        self.assertTrue(first.commitChanges())
        sent = processing.run("nexttile:send_labels", {"PROJECT": pid, "INPUT": first, "CLASS_FIELD": "class"})
        self.assertEqual(int(sent["SENT"]), 5)
        from nexttile.client import DaemonClient

        stored = DaemonClient().get_labels(pid)
        self.assertEqual(len(stored["features"]), 5)
        # The daemon pages labels (`next`); the client follows every page.
        paged = DaemonClient().get_labels(pid, limit=2)
        self.assertEqual([f["id"] for f in paged["features"]], [f["id"] for f in stored["features"]])
        self.assertEqual(len(DaemonClient().get_json(f"/projects/{pid}/labels?limit=2")["features"]), 2)
        self.assertEqual(
            sorted(f["properties"]["class"] for f in stored["features"]),
            sorted(classes[n % 3] for n in range(5)),
        )

        params["OUTPUT"] = os.path.join(out_dir, "s2.gpkg")
        second = processing.run("nexttile:retrain", params)
        self.assertEqual(int(second["ROUND"]), 1)
        new = QgsVectorLayer(second["OUTPUT"], "s2", "ogr")
        self.assertEqual(new.featureCount(), 12)
        new_ids = [f["tile_id"] for f in new.getFeatures()]
        for tile in labelled:
            self.assertNotIn(tile, new_ids)

        # An AOI: suggestions inside the map extent of the scene's north-west quarter.
        ext = raster.extent()
        quarter = f"{ext.xMinimum()},{ext.center().x()},{ext.center().y()},{ext.yMaximum()} [EPSG:32618]"
        limited = processing.run(
            "nexttile:suggest",
            dict(params, BUDGET=5, EXTENT=quarter, OUTPUT=os.path.join(out_dir, "s3.gpkg")),
        )
        inside = QgsVectorLayer(limited["OUTPUT"], "s3", "ogr")
        self.assertEqual(inside.featureCount(), 5)
        from qgis.core import QgsRectangle

        # The daemon's rule (tiling::tiles_in_aoi): a tile is a candidate when its
        # footprint intersects the AOI, so a pick may reach up to one tile (64 px of
        # 10 m) past the quarter's edges, never further, and always touches it.
        nw = QgsRectangle(ext.xMinimum(), ext.center().y(), ext.center().x(), ext.yMaximum())
        reach = QgsRectangle(nw)
        reach.grow(64 * 10.0 + 1.0)
        to_scene = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), raster.crs(), QgsProject.instance())
        for f in inside.getFeatures():
            g = f.geometry()
            g.transform(to_scene)
            box = g.boundingBox()
            self.assertTrue(box.intersects(nw), f"{f['tile_id']} {box.toString()} misses the AOI {nw.toString()}")
            self.assertTrue(reach.contains(box), f"{f['tile_id']} {box.toString()} reaches past {reach.toString()}")

        from nexttile.layers import labels_layer

        self.assertEqual(labels_layer(stored).featureCount(), 5)

        exported = processing.run("nexttile:export", {"PROJECT": pid, "FORMAT": 0, "OUTPUT": os.path.join(out_dir, "survey.gpkg")})
        survey = QgsVectorLayer(exported["OUTPUT"] + "|layername=labels", "labels", "ogr")
        self.assertEqual(survey.featureCount(), 5)

    def test_multi_modal_score_with_a_second_raster(self):
        """A project with a Sentinel-1 + Sentinel-2 encoder scores the real Sen1Floods11
        chip pair through the Processing algorithms (the daemon warps S1 onto S2's grid)."""
        chip = os.path.realpath(os.path.join(SHARED, "sen1floods11-spain-7370579"))
        d = Daemon(roots=[chip])
        try:
            use(d.url)
            fixtures = os.path.join(ROOT, "tests", "fixtures")
            r = processing.run("nexttile:create_project", {
                "NAME": "murcia",
                "ENCODER": os.path.join(fixtures, "channel_mean_s1s2.onnx"),
                "HEAD": os.path.join(fixtures, "sum_head_15.onnx")})
            self.assertEqual(json.loads(r["CLASSES"]), ["land", "water"])
            s2 = QgsRasterLayer(os.path.join(chip, "Spain_7370579_S2Hand.tif"), "s2")
            s1 = QgsRasterLayer(os.path.join(chip, "Spain_7370579_S1Hand.tif"), "s1")
            self.assertTrue(s2.isValid() and s1.isValid())
            with self.assertRaises(QgsProcessingException) as ctx:
                processing.run("nexttile:score", {"PROJECT": r["PROJECT"], "RASTER": s2, "HEATMAP": "TEMPORARY_OUTPUT"})
            self.assertIn("none of the s1 bands", str(ctx.exception))
            out = processing.run("nexttile:score", {"PROJECT": r["PROJECT"], "RASTER": s2, "PAIR": s1, "HEATMAP": "TEMPORARY_OUTPUT"})
            heat = QgsRasterLayer(out["HEATMAP"], "heat")
            self.assertTrue(heat.isValid())
            self.assertEqual((heat.width(), heat.height()), (16, 16))
            self.assertEqual(heat.crs().authid(), "EPSG:4326")
        finally:
            d.stop()

    def test_dock_starts_and_stops_a_local_daemon(self):
        import socket
        import urllib.request

        from nexttile.dock import NextTileDock

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        use(f"http://127.0.0.1:{port}")
        dock = NextTileDock(self.iface)
        try:
            dock.binary.setText(BIN)
            dock.raster.setLayer(None)
            self.assertTrue(dock.controller.start_local_daemon())
            self.assertIsNotNone(dock.controller.local)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as r:
                health = json.loads(r.read())
            self.assertEqual(health["name"], "nexttile")
            # The strategy list comes from the daemon, its default selected.
            dock.strategy.clear()
            dock.set_strategies(health["strategies"], health["default_strategy"])
            offered = [dock.strategy.itemText(i) for i in range(dock.strategy.count())]
            self.assertEqual(offered, health["strategies"])
            self.assertIn("typiclust", offered)
            self.assertEqual(dock.strategy.currentText(), "auto")
            # The numbers start from the daemon's defaults (the CLI's own constants);
            # a value the user changed is kept when the daemon reports new ones.
            defaults = health["defaults"]
            self.assertEqual(defaults["budget"], 20)
            dock.set_defaults(dict(defaults, budget=33, mc_passes=7, max_budget=50))
            self.assertEqual((dock.budget.value(), dock.passes.value(), dock.budget.maximum()), (33, 7, 50))
            dock.passes.setValue(9)
            dock.set_defaults(defaults)
            self.assertEqual((dock.budget.value(), dock.passes.value()), (defaults["budget"], 9))
            self.assertEqual(dock.budget.maximum(), defaults["max_budget"])
        finally:
            dock.controller.stop_local_daemon()
            use(self.daemon.url)
        self.assertIsNone(dock.controller.local)
        with self.assertRaises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)

    def test_memory_raster_is_refused_with_advice(self):
        from osgeo import gdal

        project = processing.run("nexttile:create_project", {"NAME": "bad-input"})
        # A raster that lives only in memory (GDAL /vsimem/), as a scratch layer would.
        gdal.Translate("/vsimem/scratch.tif", SAMPLE, srcWin=[0, 0, 64, 64])
        mem = QgsRasterLayer("/vsimem/scratch.tif", "scratch", "gdal")
        self.assertTrue(mem.isValid())
        with self.assertRaises(QgsProcessingException) as e:
            processing.run("nexttile:score", {"PROJECT": int(project["PROJECT"]), "RASTER": mem, "HEATMAP": "TEMPORARY_OUTPUT"})
        self.assertIn("GeoTIFF", str(e.exception))
        self.assertIn("--root", str(e.exception))
        # A web map layer: not a file the daemon could read.
        from nexttile.processing.base import local_raster_path

        wms = QgsRasterLayer("crs=EPSG:3857&format=image/png&layers=x&styles=&url=http://127.0.0.1:9/wms", "remote", "wms")
        with self.assertRaises(QgsProcessingException) as e:
            local_raster_path(wms)
        self.assertIn("GeoTIFF", str(e.exception))

    def test_daemon_not_running_and_wrong_token(self):
        use("http://127.0.0.1:9")  # discard port: nothing listens
        try:
            with self.assertRaises(QgsProcessingException) as e:
                processing.run("nexttile:create_project", {"NAME": "x"})
            self.assertIn("not reachable", str(e.exception))
            self.assertIn("nexttile serve", str(e.exception))
        finally:
            use(self.daemon.url)
        secured = Daemon(token="a-very-secret-token-123")
        try:
            use(secured.url, "wrong-token-wrong-token")
            with self.assertRaises(QgsProcessingException) as e:
                processing.run("nexttile:create_project", {"NAME": "x"})
            self.assertIn("wrong token", str(e.exception))
            self.assertIn("Settings", str(e.exception))
            use(secured.url, "a-very-secret-token-123")
            ok = processing.run("nexttile:create_project", {"NAME": "x"})
            self.assertGreater(int(ok["PROJECT"]), 0)
        finally:
            secured.stop()
            use(self.daemon.url)


if __name__ == "__main__":
    unittest.main()
