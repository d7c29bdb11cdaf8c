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


def wait_until(condition, timeout_ms=240_000, what="condition"):
    from qgis.PyQt.QtTest import QTest

    waited = 0
    while not condition():
        if waited > timeout_ms:
            raise AssertionError(f"timed out waiting for {what}")
        QTest.qWait(50)
        waited += 50


def crop_scenes(folder):
    """Three scenes cut from the sample (as tests/daemon_region.rs cuts them): A and B,
    640 x 640 px side by side in the sample's UTM CRS, and C below A warped to EPSG:3857."""
    from osgeo import gdal

    a, b = os.path.join(folder, "a.tif"), os.path.join(folder, "b.tif")
    gdal.Translate(a, SAMPLE, srcWin=[0, 0, 640, 640])
    gdal.Translate(b, SAMPLE, srcWin=[640, 0, 640, 640])
    c_utm, c = os.path.join(folder, "c_utm.tif"), os.path.join(folder, "c_3857.tif")
    gdal.Translate(c_utm, SAMPLE, srcWin=[0, 640, 640, 640])
    gdal.Warp(c, c_utm, dstSRS="EPSG:3857", xRes=10, yRes=10, resampleAlg="near")
    os.unlink(c_utm)
    return [a, b, c]


def label_text(layer, feature):
    """What the layer's labels say for `feature` (its label expression evaluated)."""
    from qgis.core import QgsExpression, QgsExpressionContext, QgsExpressionContextUtils

    expression = QgsExpression(layer.labeling().settings().fieldName)
    context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    context.setFeature(feature)
    return expression.evaluate(context)


class RegionTest(unittest.TestCase):
    """Issue 15: a project of three scenes; *All scenes of the project* in the dock and
    in the Processing algorithms gives picks across the scenes (each naming its scene)
    and the region heatmap; unticked, one scene as before."""

    @classmethod
    def setUpClass(cls):
        require_binary()
        cls.tmp = tempfile.mkdtemp(prefix="nexttile-region-")
        cls.rasters = os.path.join(cls.tmp, "rasters")
        os.makedirs(cls.rasters)
        cls.scenes = crop_scenes(cls.rasters)
        import nexttile

        cls.plugin = nexttile.classFactory(_Iface())
        cls.plugin.initGui()
        cls.daemon = Daemon(roots=[cls.rasters])
        try:
            cls.score_scenes()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def score_scenes(cls):
        use(cls.daemon.url)
        project = processing.run("nexttile:create_project", {"NAME": "region"})
        cls.pid, cls.classes = int(project["PROJECT"]), json.loads(project["CLASSES"])
        cls.scene_ids, cls.layers = [], []
        for path in cls.scenes:
            layer = QgsRasterLayer(path, os.path.basename(path))
            assert layer.isValid(), path
            out = processing.run("nexttile:score", {"PROJECT": cls.pid, "RASTER": layer,
                                                     "HEATMAP": os.path.join(cls.tmp, os.path.basename(path) + ".heat.tif")})
            cls.scene_ids.append(int(out["SCENE"]))
            cls.layers.append(layer)
        cls.bands = QgsRasterLayer(out["HEATMAP"], "scene heatmap").bandCount()

    @classmethod
    def tearDownClass(cls):
        for layer in QgsProject.instance().mapLayers().values():
            if layer.name().startswith("NextTile"):
                QgsProject.instance().removeMapLayer(layer.id())
        cls.plugin.unload()
        cls.daemon.stop()
        cls.layers = []  # GDAL lets go of the scenes before their folder goes
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        from qgis.core import QgsSettings

        use(self.daemon.url)
        # The review controllers here answer the last pick: no round behind the test's back.
        QgsSettings().setValue("nexttile/review/auto_retrain", False)
        self.addCleanup(QgsSettings().remove, "nexttile/review/auto_retrain")

    def region_extent(self):
        """Every scene's extent in EPSG:4326, united."""
        from qgis.core import QgsRectangle

        box = QgsRectangle()
        box.setMinimal()
        for layer in self.layers:
            t = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
            box.combineExtentWith(t.transformBoundingBox(layer.extent()))
        box.grow(1e-6)
        return box

    def check_region_picks(self, layer, n):
        self.assertTrue(layer.isValid())
        self.assertEqual(layer.featureCount(), n)
        self.assertGreaterEqual(layer.fields().indexOf("scene_id"), 0, layer.fields().names())
        feats = list(layer.getFeatures())
        scenes = [int(f["scene_id"]) for f in feats]
        self.assertTrue(set(scenes) <= set(self.scene_ids), scenes)
        self.assertGreaterEqual(len(set(scenes)), 2, f"every pick from one scene: {scenes}")
        self.assertEqual(sorted(int(f["rank"]) for f in feats), list(range(1, n + 1)))
        paths = {int(f["scene_id"]): f["scene_path"] for f in feats}
        for sid, path in paths.items():
            self.assertEqual(os.path.realpath(path), os.path.realpath(self.scenes[self.scene_ids.index(sid)]))
        self.assertTrue(self.region_extent().contains(layer.extent()), layer.extent().toString())
        return feats

    def check_region_heatmap(self, path):
        heat = QgsRasterLayer(path, "region")
        self.assertTrue(heat.isValid(), path)
        self.assertEqual(heat.bandCount(), self.bands)
        self.assertEqual(heat.crs().authid(), "EPSG:32618")  # the first scene's CRS
        # It covers every scene, C (Web Mercator) included, not only the first one.
        for layer in self.layers:
            t = QgsCoordinateTransform(layer.crs(), heat.crs(), QgsProject.instance())
            centre = t.transform(layer.extent().center())
            self.assertTrue(heat.extent().contains(centre), f"{layer.name()} {centre.toString()} not in {heat.extent().toString()}")
        return heat

    def test_processing_suggest_and_retrain_over_all_scenes(self):
        params = {"PROJECT": self.pid, "STRATEGY_NAME": "auto", "BUDGET": 12, "MC_PASSES": 2, "ALL_SCENES": True,
                  "OUTPUT": os.path.join(self.tmp, "region.gpkg"), "HEATMAP": os.path.join(self.tmp, "region.tif")}
        out = processing.run("nexttile:suggest", params)
        feats = self.check_region_picks(QgsVectorLayer(out["OUTPUT"], "region", "ogr"), 12)
        self.assertEqual(out["HEATMAP"], params["HEATMAP"])
        self.check_region_heatmap(out["HEATMAP"])

        # A scene id with "all scenes" is a contradiction: refused before the daemon.
        with self.assertRaises(QgsProcessingException) as e:
            processing.run("nexttile:suggest", dict(params, SCENE=self.scene_ids[0], OUTPUT="TEMPORARY_OUTPUT"))
        self.assertIn("All scenes of the project", str(e.exception))

        # Unticked: the project's latest scene only, as before (no scene_id, one scene).
        single = processing.run("nexttile:suggest", dict(params, ALL_SCENES=False, OUTPUT=os.path.join(self.tmp, "one.gpkg"),
                                                          HEATMAP=os.path.join(self.tmp, "none.tif")))
        one = QgsVectorLayer(single["OUTPUT"], "one", "ogr")
        self.assertEqual(one.featureCount(), 12)
        self.assertEqual(one.fields().indexOf("scene_id"), -1)
        self.assertEqual({os.path.realpath(f["scene"]) for f in one.getFeatures()}, {os.path.realpath(self.scenes[-1])})
        self.assertNotIn("HEATMAP", {k for k, v in single.items() if v})
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "none.tif")))

        # Labels on picks of two scenes (lon/lat points, per project), then a round over
        # every scene: it trains on both and never suggests a labelled tile again.
        from nexttile.client import DaemonClient

        two = [f for f in feats if int(f["scene_id"]) == int(feats[0]["scene_id"])][:1]
        two += [f for f in feats if int(f["scene_id"]) != int(feats[0]["scene_id"])][:1]
        points = [{"type": "Feature", "properties": {"class": self.classes[i]},
                   "geometry": json.loads(f.geometry().pointOnSurface().asJson(7))} for i, f in enumerate(two)]
        DaemonClient().post_json(f"/projects/{self.pid}/labels", {"type": "FeatureCollection", "features": points})
        retrained = processing.run("nexttile:retrain", dict(params, OUTPUT=os.path.join(self.tmp, "r1.gpkg"),
                                                             HEATMAP=os.path.join(self.tmp, "r1.tif")))
        self.assertGreaterEqual(int(retrained["ROUND"]), 1)
        new = self.check_region_picks(QgsVectorLayer(retrained["OUTPUT"], "r1", "ogr"), 12)
        labelled = {(int(f["scene_id"]), f["tile_id"]) for f in two}
        self.assertFalse(labelled & {(int(f["scene_id"]), f["tile_id"]) for f in new})
        self.check_region_heatmap(retrained["HEATMAP"])

    def test_dock_all_scenes_checkbox(self):
        from nexttile.dock import NextTileDock
        from nexttile.dock.controller import SUGGESTIONS_LAYER
        from nexttile.layers import REGION_HEATMAP_LAYER
        from nexttile.review.controller import ReviewItem
        from nexttile.review.sender import LabelSender

        sender = LabelSender(path=os.path.join(self.tmp, "queue.json"))
        dock = NextTileDock(_Iface(), sender=sender)
        dock.project.setText("region")
        dock.raster.setLayer(None)
        dock.strategy.clear()
        dock.strategy.addItems(["auto", "top_k"])
        dock.budget.setValue(10)
        dock.passes.setValue(2)
        self.assertFalse(dock.all_scenes.isChecked())  # one scene unless asked
        self.assertNotIn("scope", dock.controller.select_body())

        def suggestions():
            layers = QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER)
            return layers[0] if layers else None

        # Ticked: picks of every scene, each naming its scene, and the region heatmap.
        dock.all_scenes.setChecked(True)
        self.assertEqual(dock.controller.select_body()["scope"], "project")
        dock.controller.suggest()
        wait_until(lambda: suggestions() is not None and QgsProject.instance().mapLayersByName(REGION_HEATMAP_LAYER),
                   what="the region suggestions and heatmap")
        layer = suggestions()
        feats = self.check_region_picks(layer, 10)
        self.assertTrue(layer.labelsEnabled())
        for f in feats:
            text = label_text(layer, f)
            self.assertIn(f"#{f['rank']}", text)
            self.assertIn(f"scene {f['scene_id']} ", text)
            self.assertIn(os.path.splitext(os.path.basename(f["scene_path"]))[0], text)
        self.assertIn("scene_path", layer.mapTipTemplate())
        heat = QgsProject.instance().mapLayersByName(REGION_HEATMAP_LAYER)[0]
        self.assertEqual(heat.renderer().type(), "singlebandpseudocolor")
        self.check_region_heatmap(heat.source())

        # The review panel's items on region picks: one key per (scene, tile); a label
        # on a pick of each of two scenes is posted and stored inside its tile.
        controller = dock.controller.review_controller(layer)
        keys = [i.key for i in controller.items]
        self.assertEqual(len(set(keys)), len(keys))
        self.assertTrue(all(k == f"{i.scene_id}:{i.tile_id}" for k, i in zip(keys, controller.items)))
        # The panel's preview draws each pick's own scene when that raster is a layer.
        from qgis.gui import QgsMapCanvas

        from nexttile.review.panel import ReviewPanel

        shown = {sid: QgsRasterLayer(path, f"scene {sid}") for sid, path in zip(self.scene_ids, self.scenes)}
        QgsProject.instance().addMapLayers(list(shown.values()))
        self.addCleanup(QgsProject.instance().removeMapLayers, [lyr.id() for lyr in shown.values()])
        panel = ReviewPanel(controller, QgsMapCanvas(), None)
        first = controller.items[0]
        self.assertIn(f"scene {first.scene_id} · {first.tile_id}", panel.title.text())
        for item in controller.items:
            self.assertEqual([lyr.id() for lyr in panel.preview_layers(item)], [shown[item.scene_id].id()])
        first_scene = controller.items[0].scene_id
        other = next(n for n, i in enumerate(controller.items) if i.scene_id != first_scene)
        labelled = (controller.items[0], controller.items[other])
        controller.answer("class:" + self.classes[0])
        controller.go_to(other)
        controller.answer("class:" + self.classes[1])
        self.assertEqual(len(controller.answers), 2)
        sender.flush()
        wait_until(lambda: sender.pending() == 0 and sender.task is None, what="the labels to be delivered")
        from nexttile.client import DaemonClient

        stored = DaemonClient().get_labels(self.pid)["features"]
        for item, cls in zip(labelled, self.classes[:2]):
            hits = [f for f in stored if f["properties"]["class"] == cls and f["properties"]["source"] == "qgis-review"]
            self.assertTrue(any(item.geometry.contains(ReviewItem.from_geojson(h).geometry) for h in hits),
                            f"no {cls} label inside {item.key}")

        # Retrain from the review panel (R): a round over every scene, whose picks and
        # region heatmap replace the layers.
        rounds = []
        controller.round_finished.connect(rounds.append)
        layer_id, heat_id = layer.id(), heat.id()
        controller.retrain()
        wait_until(lambda: rounds and suggestions().id() != layer_id
                   and QgsProject.instance().mapLayersByName(REGION_HEATMAP_LAYER)
                   and QgsProject.instance().mapLayersByName(REGION_HEATMAP_LAYER)[0].id() != heat_id,
                   what="the region round's layers")
        self.assertEqual(rounds[0]["scope"], "project")
        self.assertEqual(len(rounds[0]["scenes"]), 3)
        layer = suggestions()
        again = {f"{f['scene_id']}:{f['tile_id']}" for f in self.check_region_picks(layer, 10)}
        for item in labelled:
            self.assertNotIn(item.key, again)
        heat = QgsProject.instance().mapLayersByName(REGION_HEATMAP_LAYER)[0]
        self.check_region_heatmap(heat.source())

        # Unticked again: one scene's picks (the project's latest), no region layer reloaded.
        old = layer.id()
        dock.all_scenes.setChecked(False)
        dock.controller.suggest()
        wait_until(lambda: suggestions() is not None and suggestions().id() != old, what="the single-scene suggestions")
        single = suggestions()
        self.assertEqual(single.featureCount(), 10)
        self.assertEqual(single.fields().indexOf("scene_id"), -1)
        self.assertFalse(single.labelsEnabled())
        self.assertEqual({os.path.realpath(f["scene"]) for f in single.getFeatures()}, {os.path.realpath(self.scenes[-1])})
        self.assertEqual(QgsProject.instance().mapLayersByName(REGION_HEATMAP_LAYER)[0].id(), heat.id())

    def test_review_keys_picks_by_scene_and_tile(self):
        """Tile ids repeat across scenes: the review panel keeps their answers apart, and
        an undo withdraws the right one."""
        from qgis.PyQt.QtCore import QObject, pyqtSignal

        from nexttile.review.controller import ReviewController

        class Sender(QObject):
            changed = pyqtSignal(int)
            failed = pyqtSignal(str)

            def __init__(self):
                super().__init__()
                self.calls = []

            def add(self, project, key, cls, geometry):
                self.calls.append(("add", key, cls))

            def withdraw(self, project, key):
                self.calls.append(("withdraw", key))

            def pending(self, project=None):
                return 0

        def pick(scene, rank, x):
            ring = [[x, 0.0], [x + 0.01, 0.0], [x + 0.01, 0.01], [x, 0.01], [x, 0.0]]
            return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {"tile_id": "r0c0", "scene_id": scene, "rank": rank, "scene_path": f"/x/{scene}.tif"}}

        sender = Sender()
        controller = ReviewController(sender, 1, ["a", "b"])
        controller.load_features([pick(7, 1, 0.0), pick(9, 2, 1.0)])
        self.assertEqual([i.key for i in controller.items], ["7:r0c0", "9:r0c0"])
        controller.answer("class:a")
        controller.answer("class:b")
        self.assertEqual(controller.answers, {"7:r0c0": "class:a", "9:r0c0": "class:b"})
        self.assertEqual(controller.counts(), (2, 0, 0, 0))
        controller.undo()
        self.assertEqual(sender.calls, [("add", "7:r0c0", "a"), ("add", "9:r0c0", "b"), ("withdraw", "9:r0c0")])
        self.assertEqual(controller.answers, {"7:r0c0": "class:a"})


if __name__ == "__main__":
    unittest.main()
