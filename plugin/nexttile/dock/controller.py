"""The main dock's logic, without widgets: connecting to the daemon (and starting a
local one), creating the project, Score / Suggest / Send labels / Retrain as Processing
tasks, loading their layers, the message-bar messages, and the review controller the
Review button opens. The view (view.py) only shows what this says and forwards clicks;
it hands this its form as a `DockForm` (the `form` callable)."""

import json
import os
import tempfile
from collections import namedtuple

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsMessageLog,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingFeedback,
    QgsProject,
    QgsSettings,
    QgsTask,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..client import SETTINGS_BINARY, DaemonClient, DaemonError, LocalDaemon, save_settings
from ..layers import (
    REGION_HEATMAP_LAYER,
    class_layer,
    heatmap_layer,
    labels_layer,
    style_suggestions,
    write_feature_collection,
)
from ..settings import daemon_defaults, remember_health
from ..translation import tr

LABELS_LAYER = "NextTile labels"
SUGGESTIONS_LAYER = "NextTile suggestions"
#: The *Limit to* choices, by index (the view shows them through tr()).
AOI_WHOLE, AOI_EXTENT, AOI_SELECTED = range(3)
AOI_CHOICES = ["Whole scene", "Map extent", "Selected polygons of the active layer"]

#: What the dock's form holds when a button is pressed: url, token and binary (text),
#: project (name), raster and pair (layers or None), aoi (an AOI_* index), strategy
#: (name), budget, passes (int), spacing (metres), sensor (an index of the score
#: algorithm's SENSOR choices: 0 = from the raster), resample (auto, off or metres) and
#: all_scenes (Suggest and Retrain over every scene of the project: `"scope": "project"`).
DockForm = namedtuple("DockForm", "url token binary project raster pair aoi strategy budget passes spacing sensor resample all_scenes",
                      defaults=(0, "auto", False))


class _HealthTask(QgsTask):
    """GET /health on a worker thread."""

    def __init__(self):
        super().__init__(tr("NextTile: connect"))
        self.health, self.message = None, None

    def run(self):
        try:
            self.health = DaemonClient().health()
            return True
        except DaemonError as e:
            self.message = str(e)
            return False


class _RegionHeatmapTask(QgsTask):
    """GET /projects/{id}/heatmap into a temporary GeoTIFF on a worker thread."""

    def __init__(self, project_id):
        super().__init__(tr("NextTile: region heatmap"))
        self.project_id = int(project_id)
        self.path, self.message = None, None

    def run(self):
        try:
            data = DaemonClient().get_bytes(f"/projects/{self.project_id}/heatmap")
        except DaemonError as e:
            self.message = str(e)
            return False
        with tempfile.NamedTemporaryFile(prefix="nexttile-region-", suffix=".tif", delete=False) as f:
            f.write(data)
            self.path = f.name
        return True


class DockController(QObject):
    """Signals: `status_changed(text)` (the connection line), `strategies_changed(names,
    default)` (the daemon's list at Connect), `defaults_changed(defaults)` (the daemon's
    selection defaults at Connect, as `settings.daemon_defaults` reads them),
    `review_requested(layer)` (the project is known: the view opens the review panel on
    `layer`)."""

    status_changed = pyqtSignal(str)
    strategies_changed = pyqtSignal(list, object)
    defaults_changed = pyqtSignal(dict)
    review_requested = pyqtSignal(object)

    def __init__(self, iface, form, sender=None, parent=None):
        super().__init__(parent)
        self.iface = iface
        self.form = form
        self.sender_ = sender
        self.project_id = None
        self.classes = []
        self.local = None
        self.tasks = []

    # --- helpers -----------------------------------------------------------------
    def _push(self, message, level, duration):
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is None:  # headless (tests, qgis_process): the message log still has it
            QgsMessageLog.logMessage(str(message), "NextTile", level)
            return
        bar.pushMessage("NextTile", str(message), level=level, duration=duration)

    def error(self, message):
        self._push(message, Qgis.Critical, 10)

    def info(self, message):
        self._push(message, Qgis.Info, 5)

    def warn(self, message):
        """A warning that stays in the message bar until it is closed."""
        self._push(message, Qgis.Warning, 0)

    def show_input_warnings(self, results):
        """The scoring job's input warnings (the score algorithm's WARNINGS, a JSON
        list), each in the message bar: an 8-bit image fed with a reflectance scale,
        bands far from the encoder's training data, pixels resampled, …"""
        try:
            warnings = json.loads(results.get("WARNINGS") or "[]")
        except ValueError:
            warnings = []
        for w in warnings:
            self.warn(tr("input: {warning}").format(warning=w))
        return warnings

    def _add_task(self, task, *keep):
        self.tasks.append((task,) + keep)
        QgsApplication.taskManager().addTask(task)

    def run_alg(self, alg_id, params, done):
        """Runs a Processing algorithm as a task; `done(results)` on success."""
        alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        feedback = QgsProcessingFeedback()
        task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)

        def finished(ok, results):
            if ok:
                done(results)
            else:
                log = feedback.textLog().strip()
                self.error(log.splitlines()[-1] if log else tr("{alg} failed").format(alg=alg_id))

        task.executed.connect(finished)
        self._add_task(task, context, feedback)

    @staticmethod
    def replace_layer(name, layer):
        """Adds `layer` to the project in place of the layers named `name`."""
        for old in QgsProject.instance().mapLayersByName(name):
            QgsProject.instance().removeMapLayer(old.id())
        QgsProject.instance().addMapLayer(layer)

    def load_suggestions(self, path):
        """The suggestions file as the styled suggestions layer (replacing the old one)."""
        layer = QgsVectorLayer(path, SUGGESTIONS_LAYER, "ogr")
        style_suggestions(layer, self.classes)
        self.replace_layer(SUGGESTIONS_LAYER, layer)
        return layer

    def load_region_heatmap(self, path):
        """The region heatmap (every scene of the project in one GeoTIFF) as its own
        uncertainty layer, replacing the previous one."""
        layer = heatmap_layer(path, REGION_HEATMAP_LAYER)
        if not layer.isValid():
            self.error(tr("the region heatmap {path} does not open").format(path=path))
            return None
        self.replace_layer(REGION_HEATMAP_LAYER, layer)
        return layer

    # --- connection --------------------------------------------------------------
    def start_local_daemon(self):
        """Starts `nexttile serve` from the configured binary, serving the folder of the
        chosen raster, when no daemon answers at the URL. Returns True when one runs."""
        form = self.form()
        binary = form.binary.strip()
        QgsSettings().setValue(SETTINGS_BINARY, binary)
        try:
            DaemonClient().health()
            return True
        except DaemonError:
            pass
        if not binary:
            return False
        layer = form.raster
        root = os.path.dirname(layer.source().split("|")[0]) if layer is not None else os.path.expanduser("~")
        self.local = LocalDaemon(binary, root)
        return True

    def stop_local_daemon(self):
        """Stops a daemon this dock started (called when the plugin unloads)."""
        if self.local is not None:
            self.local.stop()
            self.local = None

    def connect_daemon(self):
        """Saves URL and token, starts a local daemon when none answers, then reads
        /health in a task."""
        form = self.form()
        save_settings(form.url.strip(), form.token.strip())
        try:
            self.start_local_daemon()
        except DaemonError as e:
            self.error(e)
        task = _HealthTask()
        task.taskCompleted.connect(lambda: self._connected(task.health))
        task.taskTerminated.connect(lambda: self._not_connected(task.message))
        self._add_task(task)

    def _connected(self, h):
        self.status_changed.emit(tr("nexttile {version} on {provider} ({reason})").format(
            version=h.get("version"), provider=h.get("provider"), reason=h.get("provider_reason")))
        self.strategies_changed.emit(list(h.get("strategies") or []), h.get("default_strategy"))
        self.defaults_changed.emit(daemon_defaults(h))
        remember_health(h)
        # The Processing enums follow the daemon's lists from now on.
        provider = QgsApplication.processingRegistry().providerById("nexttile")
        if provider is not None:
            provider.refreshAlgorithms()
        # Reconnected: labels left waiting (a stopped daemon, an earlier session) go now.
        if self.sender_ is not None:
            self.sender_.flush()

    def _not_connected(self, message):
        self.status_changed.emit(tr("not connected"))
        self.error(message or tr("cancelled"))

    # --- project and selection -----------------------------------------------------
    def ensure_project(self, then):
        """Creates (or finds) the form's project, then calls `then()`."""
        def done(results):
            self.project_id = int(results["PROJECT"])
            self.classes = json.loads(results["CLASSES"])
            then()

        self.run_alg("nexttile:create_project", {"NAME": self.form().project.strip()}, done)

    def aoi_params(self):
        """Processing parameters for the chosen area."""
        choice = self.form().aoi
        canvas = self.iface.mapCanvas() if hasattr(self.iface, "mapCanvas") else None
        if choice == AOI_EXTENT and canvas is not None:
            e = canvas.extent()
            crs = canvas.mapSettings().destinationCrs().authid()
            return {"EXTENT": f"{e.xMinimum()},{e.xMaximum()},{e.yMinimum()},{e.yMaximum()} [{crs}]"}
        if choice == AOI_SELECTED:
            layer = self.iface.activeLayer()
            if layer is None or layer.type() != 0 or layer.selectedFeatureCount() == 0:
                raise DaemonError(tr("select one or more polygons in the active vector layer first"))
            return {"AOI_LAYER": QgsProcessingFeatureSourceDefinition(layer.id(), True)}
        return {}

    def select_body(self):
        """The form's selection settings as a suggestions/rounds body."""
        form = self.form()
        body = {
            "strategy": form.strategy or "auto",
            "budget": form.budget,
            "mc_passes": form.passes,
            "min_spacing_m": float(form.spacing),
        }
        if form.all_scenes:
            body["scope"] = "project"
        return body

    # --- actions -----------------------------------------------------------------
    def load_labels(self):
        """(Re)loads the project's labels as their own layer."""
        try:
            fc = DaemonClient().get_labels(self.project_id)
        except DaemonError as e:
            self.error(e)
            return
        self.replace_layer(LABELS_LAYER, labels_layer(fc, LABELS_LAYER))

    def score(self):
        """Scores the form's raster (and second raster) and loads the heatmap and the
        predicted-class band."""
        form = self.form()
        layer = form.raster
        if layer is None:
            self.error(tr("choose a raster layer first"))
            return

        def go():
            def done(results):
                QgsProject.instance().addMapLayer(class_layer(results["HEATMAP"], self.classes))
                QgsProject.instance().addMapLayer(heatmap_layer(results["HEATMAP"]))
                self.info(tr("scene {scene} scored").format(scene=results["SCENE"]))
                self.show_input_warnings(results)

            try:
                extra = self.aoi_params()
            except DaemonError as e:
                self.error(e)
                return
            if form.pair is not None and form.pair.id() != layer.id():
                extra["PAIR"] = form.pair
            params = {"PROJECT": self.project_id, "RASTER": layer, "HEATMAP": "TEMPORARY_OUTPUT",
                      "SENSOR": form.sensor, "RESAMPLE": form.resample or "auto", **extra}
            self.run_alg("nexttile:score", params, done)

        self.ensure_project(go)

    def suggest(self, alg="suggest"):
        """`suggest` or `retrain` (then the labels layer too); the new suggestions
        replace the suggestions layer. With *All scenes of the project* both select over
        every scored scene of the project and the region heatmap is loaded as well."""
        def go():
            form = self.form()
            params = {
                "PROJECT": self.project_id,
                "STRATEGY_NAME": form.strategy,
                "BUDGET": form.budget,
                "MC_PASSES": form.passes,
                "MIN_SPACING": float(form.spacing),
                "OUTPUT": "TEMPORARY_OUTPUT",
            }
            if form.all_scenes:
                params.update({"ALL_SCENES": True, "HEATMAP": "TEMPORARY_OUTPUT"})
            try:
                params.update(self.aoi_params())
            except DaemonError as e:
                self.error(e)
                return

            def done(results):
                layer = self.load_suggestions(results["OUTPUT"])
                if results.get("HEATMAP"):
                    self.load_region_heatmap(results["HEATMAP"])
                    scenes = {f["scene_id"] for f in layer.getFeatures()}
                    self.info(tr("{n} suggestions over {scenes} scenes of the project").format(
                        n=layer.featureCount(), scenes=len(scenes)))
                if alg == "retrain":
                    self.load_labels()

            self.run_alg(f"nexttile:{alg}", params, done)

        self.ensure_project(go)

    def retrain(self):
        self.suggest("retrain")

    def send_labels(self):
        """Sends the suggestions layer's filled `class` fields, then reloads the labels."""
        layers = QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER)
        if not layers:
            self.error(tr("no suggestions layer: press Suggest, then Review (or fill the class of some tiles and Send labels)"))
            return
        layer = layers[0]
        if layer.isEditable():
            layer.commitChanges()

        def sent(results):
            self.info(tr("{n} labels stored").format(n=results["SENT"]))
            self.load_labels()

        def go():
            self.run_alg("nexttile:send_labels", {"PROJECT": self.project_id, "INPUT": layer, "CLASS_FIELD": "class"}, sent)

        self.ensure_project(go)

    # --- review panel --------------------------------------------------------------
    def open_review(self):
        """Asks the view for the review panel on the current suggestions layer, once the
        project is known (`review_requested`)."""
        layers = QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER)
        if not layers:
            self.error(tr("no suggestions layer: press Suggest first"))
            return
        self.ensure_project(lambda: self.review_requested.emit(layers[0]))

    def review_controller(self, layer):
        """The review panel's controller on `layer`'s features (the project must be known)."""
        from ..review.controller import ReviewController, ReviewItem
        from ..review.sender import LabelSender

        if self.sender_ is None:
            self.sender_ = LabelSender(parent=self)
        to_wgs84 = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
        items = [ReviewItem.from_feature(f, to_wgs84) for f in layer.getFeatures()]
        controller = ReviewController(self.sender_, self.project_id, self.classes, self.select_body, parent=self)
        controller.load_features(items)
        controller.round_finished.connect(self.round_finished)
        return controller

    def round_finished(self, result):
        """A round closed from the review panel: its suggestions replace the layer (and,
        for a round over all scenes, the region heatmap is read again)."""
        fc = result.get("suggestions") or {"type": "FeatureCollection", "features": []}
        path = tempfile.NamedTemporaryFile(prefix="nexttile-round-", suffix=".gpkg", delete=False).name
        os.unlink(path)
        write_feature_collection(fc, path, QgsProject.instance().transformContext())
        self.load_suggestions(path)
        if result.get("scope") == "project" and self.project_id is not None:
            task = _RegionHeatmapTask(self.project_id)
            task.taskCompleted.connect(lambda: self.load_region_heatmap(task.path))
            task.taskTerminated.connect(lambda: self.error(task.message or tr("cancelled")))
            self._add_task(task)
