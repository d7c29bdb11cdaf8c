"""The review panel's widgets: the tile under review (rank, predicted class, top-3
probabilities, uncertainty, why it was picked, an RGB preview), one button per answer
showing its key, the queue state and the round history. The logic is in controller.py;
this module only shows it, moves the map canvas and forwards keys."""

import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMapLayerType,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.gui import QgsRubberBand
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QKeySequence, QPixmap
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..settings import RETRAIN, SKIP, UNDO, UNUSABLE
from ..translation import tr
from .history import HistoryChart, describe

PREVIEW_PX = 160



def why_picked(props):
    """Why the strategy picked a tile, from the properties the daemon sends."""
    parts = [tr("strategy {s}").format(s=props.get("strategy") or "?")]
    if props.get("stage"):
        parts.append(tr("stage {s}").format(s=props["stage"]))
    if props.get("score") is not None:
        parts.append(tr("pick score {v:.3f}").format(v=float(props["score"])))
    if props.get("metric"):
        parts.append(tr("uncertainty metric {m}").format(m=props["metric"]))
    if props.get("cluster") is not None:
        parts.append(tr("stands for cluster {c}").format(c=props["cluster"]))
    if props.get("covers") is not None:
        parts.append(tr("covers {n} unlabelled tiles").format(n=props["covers"]))
    if props.get("anchor_tile"):
        parts.append(tr("neighbourhood anchor {a}").format(a=props["anchor_tile"]))
    return "; ".join(parts)


class ReviewPanel(QWidget):
    """The panel. Keys pressed while it has focus go to the controller."""

    def __init__(self, controller, canvas, raster_layer=None, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.canvas = canvas
        self.raster_layer = raster_layer
        self.band = None
        self.setFocusPolicy(Qt.StrongFocus)
        layout = QVBoxLayout(self)
        self.title = QLabel()
        self.title.setObjectName("title")
        layout.addWidget(self.title)
        row = QHBoxLayout()
        self.preview = QLabel()
        self.preview.setFixedSize(QSize(PREVIEW_PX, PREVIEW_PX))
        self.preview.setStyleSheet("background: #222; border: 1px solid #888")
        row.addWidget(self.preview)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.RichText)
        self.info.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        row.addWidget(self.info, 1)
        layout.addLayout(row)
        self.grid = QGridLayout()
        layout.addLayout(self.grid)
        self.buttons = {}
        self.state = QLabel()
        self.state.setWordWrap(True)
        layout.addWidget(self.state)
        self.chart = HistoryChart()
        layout.addWidget(self.chart)
        self.history_text = QLabel()
        self.history_text.setWordWrap(True)
        layout.addWidget(self.history_text)
        tools = QHBoxLayout()
        self.settings_button = QPushButton(tr("Keys && margin…"))
        self.settings_button.setFocusPolicy(Qt.NoFocus)
        self.settings_button.clicked.connect(self.edit_settings)
        tools.addWidget(self.settings_button)
        tools.addStretch(1)
        layout.addLayout(tools)
        layout.addStretch(1)
        self.make_buttons()
        controller.current_changed.connect(self.show_current)
        controller.pending_changed.connect(lambda _n: self.update_state())
        controller.retraining.connect(lambda _b: self.update_state())
        controller.history_changed.connect(self.show_history)
        controller.message.connect(self.show_message)
        self.last_message = ""
        self.show_current(controller.index)

    # --- buttons -----------------------------------------------------------------
    def make_buttons(self):
        """One button per answer, its key on it (the keyboard map of the settings)."""
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.buttons = {}
        keys = self.controller.keys
        actions = [f"class:{c}" for c in self.controller.classes] + [SKIP, UNUSABLE, UNDO, RETRAIN]
        names = {SKIP: tr("Skip"), UNUSABLE: tr("Unusable"), UNDO: tr("Back / undo"), RETRAIN: tr("Retrain")}
        for n, action in enumerate(actions):
            label = action[len("class:"):] if action.startswith("class:") else names[action]
            key = keys.get(action) or ""
            b = QPushButton(f"{key}  {label}" if key else label)
            b.setFocusPolicy(Qt.NoFocus)
            b.setToolTip(tr("key: {k}").format(k=key or tr("none")))
            b.clicked.connect(lambda _checked=False, a=action: self.controller.perform(a))
            self.grid.addWidget(b, n // 3, n % 3)
            self.buttons[action] = b

    def keyPressEvent(self, event):  # noqa: N802 (Qt API name)
        mods = event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier)
        text = QKeySequence(int(event.key()) | int(mods)).toString()
        if self.controller.handle_key(text):
            event.accept()
            return
        super().keyPressEvent(event)

    # --- the tile under review ---------------------------------------------------
    def show_current(self, index):
        item = self.controller.current()
        self.update_state()
        if item is None:
            labelled, skipped, unusable, _ = self.controller.counts()
            self.title.setText(tr("Round done: {l} labelled, {u} unusable, {s} skipped").format(l=labelled, u=unusable, s=skipped))
            self.info.setText(tr("Press {key} (Retrain) to train on the new labels and load the next round, "
                                 "or {undo} to go back.").format(key=self.controller.keys.get(RETRAIN, "R"),
                                                                  undo=self.controller.keys.get(UNDO, "Backspace")))
            self.preview.clear()
            if self.band is not None:
                self.band.reset(QgsWkbTypes.PolygonGeometry)
            return
        p = item.props
        tile = item.tile_id if item.scene_id is None else tr("scene {scene} · {tile}").format(scene=item.scene_id, tile=item.tile_id)
        self.title.setText(tr("Tile {i} of {n} · rank {r} · {t}").format(i=index + 1, n=len(self.controller.items), r=item.rank, t=tile))
        top = ", ".join(f"{c} {100.0 * v:.0f} %" for c, v in item.top_probabilities(3))
        unc = p.get("uncertainty") or {}
        metrics = ", ".join(f"{k} {float(v):.3f}" for k, v in unc.items()) if isinstance(unc, dict) else ""
        near = self.controller.nearest_labelled_m(item)
        near_text = tr("{d:.0f} m").format(d=near) if near is not None else tr("no label yet")
        self.info.setText(
            "<b>{pred}</b> {predicted}<br>{top_label} {top}<br>{unc_label} {metrics}<br>{why_label} {why}<br>{near_label} {near}".format(
                pred=tr("Predicted:"), predicted=p.get("predicted_class") or "?",
                top_label=tr("Top 3:"), top=top or "?",
                unc_label=tr("Uncertainty:"), metrics=metrics or "?",
                why_label=tr("Why:"), why=why_picked(p),
                near_label=tr("Nearest label:"), near=near_text,
            )
        )
        self.show_on_canvas(item)

    def tile_rect(self, item, crs):
        """The tile's bounding box in `crs` (its footprint transformed, then boxed)."""
        to_canvas = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), crs, QgsProject.instance())
        g = QgsGeometry(item.geometry)
        g.transform(to_canvas)
        return g.boundingBox()

    def show_on_canvas(self, item):
        """Pans/zooms the canvas to the tile with the configured margin, outlines it,
        and renders its preview."""
        if self.canvas is None:
            return
        crs = self.canvas.mapSettings().destinationCrs()
        rect = self.tile_rect(item, crs)
        margin = settings.margin_tiles() * max(rect.width(), rect.height())
        view = QgsRectangle(rect)
        view.grow(margin)
        self.canvas.setExtent(view)
        self.canvas.refresh()
        if self.band is None:
            self.band = QgsRubberBand(self.canvas, QgsWkbTypes.PolygonGeometry)
            self.band.setStrokeColor(QColor(255, 0, 255))
            self.band.setFillColor(QColor(255, 0, 255, 0))
            self.band.setWidth(3)
        self.band.setToGeometry(item.geometry, QgsCoordinateReferenceSystem("EPSG:4326"))
        self.band.show()
        self.preview.setPixmap(self.render_preview(rect, crs, self.preview_layers(item)))

    def preview_layers(self, item):
        """The layers the preview draws: the scene layer; for a pick of another scene of
        the project (picks over all scenes name their `scene_path`) the project's raster
        layers on that file, else the canvas's layers."""
        path = item.props.get("scene_path")
        if not path:
            return [self.raster_layer] if self.raster_layer is not None else self.canvas.layers()
        path = os.path.realpath(str(path))
        same = [lyr for lyr in QgsProject.instance().mapLayers().values()
                if lyr.type() == QgsMapLayerType.RasterLayer and os.path.realpath(lyr.source().split("|")[0]) == path]
        return same or self.canvas.layers()

    def render_preview(self, rect, crs, layers=None):
        """The tile as `layers` draw it (by default the scene layer, the canvas's layers
        when no scene layer is set), a little wider than the tile, as a PREVIEW_PX square."""
        if layers is None:
            layers = [self.raster_layer] if self.raster_layer is not None else self.canvas.layers()
        ms = QgsMapSettings()
        ms.setLayers([lyr for lyr in layers if lyr is not None and lyr.isValid()])
        ms.setDestinationCrs(crs)
        ms.setTransformContext(QgsProject.instance().transformContext())
        ms.setBackgroundColor(QColor(34, 34, 34))
        view = QgsRectangle(rect)
        view.grow(0.1 * max(rect.width(), rect.height()))
        ms.setExtent(view)
        ms.setOutputSize(QSize(PREVIEW_PX, PREVIEW_PX))
        job = QgsMapRendererSequentialJob(ms)
        job.start()
        job.waitForFinished()
        return QPixmap.fromImage(job.renderedImage())

    # --- state -------------------------------------------------------------------
    def update_state(self):
        labelled, skipped, unusable, left = self.controller.counts()
        pending = self.controller.sender_.pending(self.controller.project_id)
        parts = [tr("{l} labelled · {u} unusable · {s} skipped · {left} left").format(l=labelled, u=unusable, s=skipped, left=left)]
        if pending:
            parts.append(tr("{n} waiting for the daemon (kept on disk)").format(n=pending))
        if self.controller.busy:
            parts.append(tr("retraining…"))
        if self.last_message:
            parts.append(self.last_message)
        self.state.setText(" · ".join(parts))
        for b in self.buttons.values():
            b.setEnabled(not self.controller.busy)

    def show_message(self, text, is_error):
        self.last_message = text
        self.update_state()

    def show_history(self, rounds):
        self.chart.set_rounds(rounds, self.controller.classes)
        self.history_text.setText("<br>".join(describe(rounds)[-3:]))

    def edit_settings(self):
        dialog = ReviewSettingsDialog(self.controller.classes, self)
        if dialog.exec_():
            self.controller.keys = settings.keymap(self.controller.classes)
            self.make_buttons()
            if self.controller.current() is not None:
                self.show_current(self.controller.index)

    def clear(self):
        if self.band is not None:
            self.band.reset(QgsWkbTypes.PolygonGeometry)
            if self.canvas is not None:
                self.canvas.scene().removeItem(self.band)
            self.band = None


class ReviewSettingsDialog(QDialog):
    """The keyboard map (one key per answer), the zoom margin, the label batch size and
    whether the last answer of a round starts the retrain; stored in QgsSettings."""

    def __init__(self, classes, parent=None):
        super().__init__(parent)
        self.setWindowTitle(tr("NextTile review settings"))
        form = QFormLayout(self)
        self.margin = QDoubleSpinBox()
        self.margin.setRange(0.0, 50.0)
        self.margin.setSingleStep(0.5)
        self.margin.setSuffix(tr(" tiles"))
        self.margin.setValue(settings.margin_tiles())
        form.addRow(tr("Margin around the tile"), self.margin)
        self.batch = QSpinBox()
        self.batch.setRange(1, 500)
        self.batch.setValue(settings.batch_size())
        form.addRow(tr("Labels per request"), self.batch)
        self.auto = QCheckBox(tr("Retrain when the last tile is answered"))
        self.auto.setChecked(settings.auto_retrain())
        form.addRow(self.auto)
        self.edits = {}
        names = {SKIP: tr("Skip"), UNUSABLE: tr("Unusable"), UNDO: tr("Back / undo"), RETRAIN: tr("Retrain")}
        for action, key in settings.keymap(classes).items():
            edit = QKeySequenceEdit(QKeySequence(key))
            self.edits[action] = edit
            form.addRow(action[len("class:"):] if action.startswith("class:") else names.get(action, action), edit)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def save(self):
        from qgis.core import QgsSettings

        s = QgsSettings()
        s.setValue(settings.MARGIN, self.margin.value())
        s.setValue(settings.BATCH, self.batch.value())
        s.setValue(settings.AUTO_RETRAIN, self.auto.isChecked())
        settings.save_keymap({a: e.keySequence().toString() for a, e in self.edits.items()})
        self.accept()


class ReviewDock(QDockWidget):
    """The panel in a dock of its own."""

    def __init__(self, controller, canvas, raster_layer=None, parent=None):
        super().__init__(tr("NextTile review"), parent)
        self.setObjectName("NextTileReviewDock")
        self.panel = ReviewPanel(controller, canvas, raster_layer)
        self.setWidget(self.panel)
        self.setFocusProxy(self.panel)
