"""The main dock's widgets: connection (URL, token, local daemon binary, status),
project, raster, second raster, sensor preset, resampling, *Limit to*, *All scenes of the
project*, strategy, budget, MC passes and spacing,
and the Connect / Score / Suggest / Send labels / Retrain / Review buttons. The logic
is in controller.py; this module only shows it, hands it the form and opens the
review panel's dock (review/) when it asks."""

from qgis.core import QgsMapLayerProxyModel, QgsSettings
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
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

from ..client import SETTINGS_BINARY, settings_token, settings_url
from ..settings import daemon_defaults, daemon_lists
from ..translation import tr
from ..processing.score import SENSORS
from .controller import AOI_CHOICES, DockController, DockForm


class NextTileDock(QDockWidget):
    """The dock widget; `controller` (a DockController) does the work."""

    def __init__(self, iface, parent=None, sender=None):
        super().__init__(tr("NextTile"), parent)
        self.iface = iface
        self.review = None
        self.setObjectName("NextTileDock")
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
        self.sensor = QComboBox()
        self.sensor.addItems([tr("From the raster")] + SENSORS)
        self.sensor.setToolTip(tr("Band order and scaling of rasters that are not Sentinel-2 L1C stacks: e.g. rgb for an 8-bit orthophoto, landsat8 for a Landsat 8 surface-reflectance stack"))
        form.addRow(tr("Sensor"), self.sensor)
        self.resample = QComboBox()
        self.resample.setEditable(True)
        self.resample.addItems(["auto", "off"])
        self.resample.setToolTip(tr("auto: warp to the encoder's resolution when the pixels differ by more than 1.5x; off; or type a pixel size in metres"))
        form.addRow(tr("Resample"), self.resample)
        self.aoi = QComboBox()
        self.aoi.addItems([tr(c) for c in AOI_CHOICES])
        form.addRow(tr("Limit to"), self.aoi)
        self.all_scenes = QCheckBox(tr("All scenes of the project"))
        self.all_scenes.setToolTip(tr(
            "Suggest and Retrain select over every scene scored in this project at once (one budget, ranks "
            "across scenes; Retrain trains on the labels of every scene): each pick names its scene, and the "
            "region heatmap (every scene in one layer) is loaded. Score each raster first; unticked, only "
            "the project's latest scene is used."))
        form.addRow("", self.all_scenes)
        self.strategy = QComboBox()
        strategies, _, default = daemon_lists()
        self.set_strategies(strategies, default)
        form.addRow(tr("Strategy"), self.strategy)
        self.budget = QSpinBox()
        form.addRow(tr("Budget"), self.budget)
        self.passes = QSpinBox()
        form.addRow(tr("MC passes"), self.passes)
        self.spacing = QSpinBox()
        self.spacing.setRange(0, 1_000_000)
        self.spacing.setSuffix(tr(" m"))
        form.addRow(tr("Min spacing"), self.spacing)
        self.defaults = {}
        self.set_defaults(daemon_defaults())
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

        self.controller = DockController(iface, self.form, sender, parent=self)
        self.buttons["Connect"].clicked.connect(self.controller.connect_daemon)
        self.buttons["Score"].clicked.connect(self.controller.score)
        self.buttons["Suggest"].clicked.connect(lambda: self.controller.suggest("suggest"))
        self.buttons["Send labels"].clicked.connect(self.controller.send_labels)
        self.buttons["Retrain"].clicked.connect(self.controller.retrain)
        self.buttons["Review"].clicked.connect(self.controller.open_review)
        self.controller.status_changed.connect(self.status.setText)
        self.controller.strategies_changed.connect(self.set_strategies)
        self.controller.defaults_changed.connect(self.set_defaults)
        self.controller.review_requested.connect(self.show_review)

    def form(self):
        """What the form holds now, for the controller."""
        return DockForm(
            url=self.url.text(), token=self.token.text(), binary=self.binary.text(),
            project=self.project.text(), raster=self.raster.currentLayer(), pair=self.pair.currentLayer(),
            aoi=self.aoi.currentIndex(), strategy=self.strategy.currentText(),
            budget=self.budget.value(), passes=self.passes.value(), spacing=self.spacing.value(),
            sensor=self.sensor.currentIndex(), resample=self.resample.currentText().strip() or "auto",
            all_scenes=self.all_scenes.isChecked(),
        )

    def set_defaults(self, defaults):
        """Takes the daemon's selection defaults and limits (GET /health `defaults`, the
        constants the CLI and the daemon apply): a field the user has not changed from
        the previous default shows the new one."""
        old = self.defaults
        self.budget.setRange(1, int(defaults["max_budget"]))
        self.passes.setRange(1, int(defaults["max_mc_passes"]))
        for box, key in ((self.budget, "budget"), (self.passes, "mc_passes"), (self.spacing, "min_spacing_m")):
            if key not in old or box.value() == int(old[key]):
                box.setValue(int(defaults[key]))
        self.defaults = dict(defaults)

    def set_strategies(self, names, default=None):
        """Shows the strategies the daemon offers (its /health list), keeping the
        current choice when it is still offered, else the daemon's default."""
        if not names:
            return
        names = [str(n) for n in names]
        current = self.strategy.currentText()
        self.strategy.clear()
        self.strategy.addItems(names)
        keep = current if current in names else default
        if keep in names:
            self.strategy.setCurrentIndex(names.index(keep))

    # --- review panel --------------------------------------------------------------
    def show_review(self, layer):
        """The review dock for `layer`'s features (the project must be known)."""
        from ..review.panel import ReviewDock

        self.close_review()
        controller = self.controller.review_controller(layer)
        canvas = self.iface.mapCanvas() if hasattr(self.iface, "mapCanvas") else None
        self.review = ReviewDock(controller, canvas, self.raster.currentLayer())
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.review)
        self.review.show()
        self.review.raise_()
        self.review.panel.setFocus()
        controller.refresh()
        return self.review

    def close_review(self):
        """Closes the review dock (its labels stay queued on disk until delivered)."""
        if self.review is not None:
            self.review.panel.clear()
            self.iface.removeDockWidget(self.review)
            self.review.panel.controller.deleteLater()
            self.review.deleteLater()
            self.review = None
