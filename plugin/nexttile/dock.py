"""The NextTile dock: connection status, project, raster, strategy and budget, and the
Score / Suggest / Send labels / Retrain / Review buttons. Every daemon call runs as a
QgsTask (the Processing algorithms run by QgsProcessingAlgRunnerTask), never on the UI
thread. The review panel (review/) is its own dock, opened by Review."""

import json
import os
import tempfile

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingFeedback,
    QgsProject,
    QgsSettings,
    QgsTask,
    QgsVectorLayer,
)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .client import (
    SETTINGS_BINARY,
    DaemonClient,
    DaemonError,
    LocalDaemon,
    save_settings,
    settings_token,
    settings_url,
)
from .layers import class_layer, heatmap_layer, labels_layer, style_suggestions, write_feature_collection
from .settings import daemon_lists, remember_health


def tr(text):
    """Translates a user-visible string (context `NextTile`)."""
    return QCoreApplication.translate("NextTile", text)


LABELS_LAYER = "NextTile labels"
AOI_CHOICES = ["Whole scene", "Map extent", "Selected polygons of the active layer"]  # shown through tr()

SUGGESTIONS_LAYER = "NextTile suggestions"


class NextTileDock(QDockWidget):
    """The dock widget."""

    def __init__(self, iface, parent=None, sender=None):
        super().__init__("NextTile", parent)
        self.iface = iface
        self.sender_ = sender
        self.review = None
        self.setObjectName("NextTileDock")
        self.classes = []
        self.tasks = []
        body = QWidget()
        layout = QVBoxLayout(body)
        form = QFormLayout()
        self.url = QLineEdit(settings_url())
        self.token = QLineEdit(settings_token())
        self.token.setEchoMode(QLineEdit.Password)
        form.addRow(tr("Daemon URL"), self.url)
        form.addRow(tr("Token"), self.token)
        self.binary = QLineEdit(QgsSettings().value(SETTINGS_BINARY, "", type=str))
        self.binary.setPlaceholderText(tr("path of the nexttile binary (to start a local daemon)"))
        form.addRow(tr("Local daemon"), self.binary)
        self.status = QLabel(tr("not connected"))
        self.status.setWordWrap(True)
        form.addRow(tr("Status"), self.status)
        self.project = QLineEdit("my-project")
        form.addRow(tr("Project"), self.project)
        self.raster = QgsMapLayerComboBox()
        self.raster.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow(tr("Raster"), self.raster)
        self.pair = QgsMapLayerComboBox()
        self.pair.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.pair.setAllowEmptyLayer(True)
        self.pair.setLayer(None)
        self.pair.setToolTip(tr("Multi-modal encoders only: the second sensor's raster (e.g. Sentinel-1), warped onto the first raster's grid"))
        form.addRow(tr("Second raster"), self.pair)
        self.aoi = QComboBox()
        self.aoi.addItems([tr(c) for c in AOI_CHOICES])
        form.addRow(tr("Limit to"), self.aoi)
        self.strategy = QComboBox()
        strategies, _, default = daemon_lists()
        self.strategy.addItems(strategies)
        if default in strategies:
            self.strategy.setCurrentIndex(strategies.index(default))
        form.addRow(tr("Strategy"), self.strategy)
        self.budget = QSpinBox()
        self.budget.setRange(1, 10000)
        self.budget.setValue(20)
        form.addRow(tr("Budget"), self.budget)
        self.passes = QSpinBox()
        self.passes.setRange(1, 1000)
        self.passes.setValue(20)
        form.addRow(tr("MC passes"), self.passes)
        self.spacing = QSpinBox()
        self.spacing.setRange(0, 1_000_000)
        self.spacing.setSuffix(" m")
        form.addRow(tr("Min spacing"), self.spacing)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.buttons = {}
        for name, text in (("Connect", tr("Connect")), ("Score", tr("Score")), ("Suggest", tr("Suggest")),
                           ("Send labels", tr("Send labels")), ("Retrain", tr("Retrain"))):
            b = QPushButton(text)
            row.addWidget(b)
            self.buttons[name] = b
        layout.addLayout(row)
        self.buttons["Review"] = QPushButton(tr("Review suggestions (keyboard)"))
        self.buttons["Review"].setToolTip(tr("Walk the suggestions one by one: one key per answer, labels sent as you go"))
        layout.addWidget(self.buttons["Review"])
        layout.addStretch(1)
        self.setWidget(body)
        self.project_id = None
        self.local = None
        self.buttons["Connect"].clicked.connect(self.connect_daemon)
        self.buttons["Score"].clicked.connect(self.score)
        self.buttons["Suggest"].clicked.connect(lambda: self.suggest("suggest"))
        self.buttons["Send labels"].clicked.connect(self.send_labels)
        self.buttons["Retrain"].clicked.connect(lambda: self.suggest("retrain"))
        self.buttons["Review"].clicked.connect(self.open_review)

    # --- helpers -----------------------------------------------------------------
    def error(self, message):
        self.iface.messageBar().pushMessage("NextTile", str(message), level=Qgis.Critical, duration=10)

    def info(self, message):
        self.iface.messageBar().pushMessage("NextTile", str(message), level=Qgis.Info, duration=5)

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
                self.error(feedback.textLog().strip().splitlines()[-1] if feedback.textLog().strip() else tr("{alg} failed").format(alg=alg_id))

        task.executed.connect(finished)
        self.tasks.append((task, context, feedback))
        QgsApplication.taskManager().addTask(task)

    # --- actions -----------------------------------------------------------------
    def start_local_daemon(self):
        """Starts `nexttile serve` from the configured binary, serving the folder of the
        chosen raster, when no daemon answers at the URL. Returns True when one runs."""
        binary = self.binary.text().strip()
        QgsSettings().setValue(SETTINGS_BINARY, binary)
        try:
            DaemonClient().health()
            return True
        except DaemonError:
            pass
        if not binary:
            return False
        layer = self.raster.currentLayer()
        root = os.path.dirname(layer.source().split("|")[0]) if layer is not None else os.path.expanduser("~")
        self.local = LocalDaemon(binary, root)
        return True

    def stop_local_daemon(self):
        """Stops a daemon this dock started (called when the plugin unloads)."""
        if self.local is not None:
            self.local.stop()
            self.local = None

    def aoi_params(self):
        """Processing parameters for the chosen area."""
        choice = self.aoi.currentIndex()
        if choice == 1 and self.iface.mapCanvas() is not None:
            canvas = self.iface.mapCanvas()
            e = canvas.extent()
            crs = canvas.mapSettings().destinationCrs().authid()
            return {"EXTENT": f"{e.xMinimum()},{e.xMaximum()},{e.yMinimum()},{e.yMaximum()} [{crs}]"}
        if choice == 2:
            layer = self.iface.activeLayer()
            if layer is None or layer.type() != 0 or layer.selectedFeatureCount() == 0:
                raise DaemonError(tr("select one or more polygons in the active vector layer first"))
            return {"AOI_LAYER": QgsProcessingFeatureSourceDefinition(layer.id(), True)}
        return {}

    def load_labels(self):
        """(Re)loads the project's labels as their own layer."""
        try:
            fc = DaemonClient().get_labels(self.project_id)
        except DaemonError as e:
            self.error(e)
            return
        for old in QgsProject.instance().mapLayersByName(LABELS_LAYER):
            QgsProject.instance().removeMapLayer(old.id())
        QgsProject.instance().addMapLayer(labels_layer(fc, LABELS_LAYER))

    def connect_daemon(self):
        save_settings(self.url.text().strip(), self.token.text().strip())
        try:
            self.start_local_daemon()
        except DaemonError as e:
            self.error(e)
        dock = self

        class Health(QgsTask):
            def run(self):
                try:
                    self.health = DaemonClient().health()
                    return True
                except DaemonError as e:
                    self.message = str(e)
                    return False

            def finished(self, ok):
                if ok:
                    h = self.health
                    dock.status.setText(f"nexttile {h.get('version')} on {h.get('provider')} ({h.get('provider_reason')})")
                    dock.set_strategies(h.get("strategies"), h.get("default_strategy"))
                    remember_health(h)
                    # The Processing enums follow the daemon's lists from now on.
                    provider = QgsApplication.processingRegistry().providerById("nexttile")
                    if provider is not None:
                        provider.refreshAlgorithms()
                    # Reconnected: labels left waiting (a stopped daemon, an earlier session) go now.
                    if dock.sender_ is not None:
                        dock.sender_.flush()
                else:
                    dock.status.setText(tr("not connected"))
                    dock.error(self.message)

        task = Health(tr("NextTile: connect"))
        self.tasks.append((task,))
        QgsApplication.taskManager().addTask(task)

    def set_strategies(self, names, default=None):
        """Shows the strategies the daemon offers (its /health list), keeping the
        current choice when it is still offered, else the daemon's default."""
        if not names:
            return
        current = self.strategy.currentText()
        self.strategy.clear()
        self.strategy.addItems([str(n) for n in names])
        keep = current if current in names else default
        if keep in names:
            self.strategy.setCurrentIndex(names.index(keep))

    def ensure_project(self, then):
        def done(results):
            self.project_id = int(results["PROJECT"])
            self.classes = json.loads(results["CLASSES"])
            then()

        self.run_alg("nexttile:create_project", {"NAME": self.project.text().strip()}, done)

    def score(self):
        layer = self.raster.currentLayer()
        if layer is None:
            self.error(tr("choose a raster layer first"))
            return

        def go():
            def done(results):
                QgsProject.instance().addMapLayer(class_layer(results["HEATMAP"], self.classes))
                QgsProject.instance().addMapLayer(heatmap_layer(results["HEATMAP"]))
                self.info(tr("scene {scene} scored").format(scene=results["SCENE"]))

            try:
                extra = self.aoi_params()
            except DaemonError as e:
                self.error(e)
                return
            pair = self.pair.currentLayer()
            if pair is not None and pair.id() != layer.id():
                extra["PAIR"] = pair
            self.run_alg("nexttile:score", {"PROJECT": self.project_id, "RASTER": layer, "HEATMAP": "TEMPORARY_OUTPUT", **extra}, done)

        self.ensure_project(go)

    def suggest(self, alg):
        def go():
            params = {
                "PROJECT": self.project_id,
                "STRATEGY_NAME": self.strategy.currentText(),
                "BUDGET": self.budget.value(),
                "MC_PASSES": self.passes.value(),
                "MIN_SPACING": float(self.spacing.value()),
                "OUTPUT": "TEMPORARY_OUTPUT",
            }
            try:
                params.update(self.aoi_params())
            except DaemonError as e:
                self.error(e)
                return

            def done(results):
                for old in QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER):
                    QgsProject.instance().removeMapLayer(old.id())
                layer = QgsVectorLayer(results["OUTPUT"], SUGGESTIONS_LAYER, "ogr")
                style_suggestions(layer, self.classes)
                QgsProject.instance().addMapLayer(layer)
                if alg == "retrain":
                    self.load_labels()

            self.run_alg(f"nexttile:{alg}", params, done)

        self.ensure_project(go)

    def send_labels(self):
        layers = QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER)
        if not layers:
            self.error(tr("no suggestions layer: press Suggest, then Review (or fill the class of some tiles and Send labels)"))
            return
        layer = layers[0]
        if layer.isEditable():
            layer.commitChanges()

        def go():
            self.run_alg(
                "nexttile:send_labels",
                {"PROJECT": self.project_id, "INPUT": layer, "CLASS_FIELD": "class"},
                lambda r: (self.info(tr("{n} labels stored").format(n=r["SENT"])), self.load_labels()),
            )

        self.ensure_project(go)


    # --- review panel --------------------------------------------------------------
    def select_body(self):
        """The dock's selection settings as a suggestions/rounds body."""
        body = {
            "strategy": self.strategy.currentText() or "auto",
            "budget": self.budget.value(),
            "mc_passes": self.passes.value(),
            "min_spacing_m": float(self.spacing.value()),
        }
        return body

    def open_review(self):
        """Opens the review panel on the current suggestions layer (its own dock)."""
        layers = QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER)
        if not layers:
            self.error(tr("no suggestions layer: press Suggest first"))
            return

        def go():
            self.show_review(layers[0])

        self.ensure_project(go)

    def show_review(self, layer):
        """The review dock for `layer`'s features (the project must be known)."""
        from .review.controller import ReviewController, ReviewItem
        from .review.panel import ReviewDock
        from .review.sender import LabelSender

        if self.sender_ is None:
            self.sender_ = LabelSender(parent=self)
        self.close_review()
        to_wgs84 = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
        items = [ReviewItem.from_feature(f, to_wgs84) for f in layer.getFeatures()]
        controller = ReviewController(self.sender_, self.project_id, self.classes, self.select_body, parent=self)
        controller.load_features(items)
        controller.round_finished.connect(self.round_finished)
        canvas = self.iface.mapCanvas() if hasattr(self.iface, "mapCanvas") else None
        self.review = ReviewDock(controller, canvas, self.raster.currentLayer())
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.review)
        self.review.show()
        self.review.raise_()
        self.review.panel.setFocus()
        controller.refresh()
        return self.review

    def round_finished(self, result):
        """A round closed from the review panel: its suggestions replace the layer."""
        fc = result.get("suggestions") or {"type": "FeatureCollection", "features": []}
        path = tempfile.NamedTemporaryFile(prefix="nexttile-round-", suffix=".gpkg", delete=False).name
        os.unlink(path)
        write_feature_collection(fc, path, QgsProject.instance().transformContext())
        for old in QgsProject.instance().mapLayersByName(SUGGESTIONS_LAYER):
            QgsProject.instance().removeMapLayer(old.id())
        layer = QgsVectorLayer(path, SUGGESTIONS_LAYER, "ogr")
        style_suggestions(layer, self.classes)
        QgsProject.instance().addMapLayer(layer)

    def close_review(self):
        """Closes the review dock (its labels stay queued on disk until delivered)."""
        if self.review is not None:
            self.review.panel.clear()
            self.iface.removeDockWidget(self.review)
            self.review.panel.controller.deleteLater()
            self.review.deleteLater()
            self.review = None
