"""The review panel's logic, without widgets: the round's suggestions in rank order,
the answer given to each, undo, the keyboard map, the label queue, and the retrain that
closes a round. The panel (panel.py) only shows what this says and forwards keys."""

import json

from qgis.core import (
    QgsApplication,
    QgsDistanceArea,
    QgsGeometry,
    QgsPointXY,
    QgsTask,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..client import DaemonClient, DaemonError
from ..settings import RETRAIN, SKIP, UNDO, UNUSABLE, auto_retrain, keymap, normalize_key
from ..translation import tr

#: The reserved class of a tile that cannot be labelled (cloud, nodata): the daemon
#: keeps it out of suggestions and never trains on it.
UNUSABLE_CLASS = "unusable"



def _props(value):
    """A feature property as the daemon sent it: JSON text (from a GeoPackage) decoded."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def geometry_from_geojson(g):
    """A GeoJSON geometry (dict) as a QgsGeometry (empty when missing or invalid)."""
    if not g:
        return QgsGeometry()
    from osgeo import ogr

    parsed = ogr.CreateGeometryFromJson(json.dumps(g))
    return QgsGeometry.fromWkt(parsed.ExportToWkt()) if parsed is not None else QgsGeometry()


class ReviewItem:
    """One suggested tile: its footprint (EPSG:4326) and the daemon's properties. `key`
    names it within the round: its tile id, or `<scene id>:<tile id>` for picks over
    every scene of a project (`"scope": "project"`), whose tile ids repeat across scenes."""

    def __init__(self, geometry, props):
        self.geometry = geometry
        self.props = props
        self.tile_id = str(props.get("tile_id"))
        self.rank = int(props.get("rank") or 0)
        scene = props.get("scene_id")
        self.scene_id = None if scene in (None, "") else int(scene)
        self.key = self.tile_id if self.scene_id is None else f"{self.scene_id}:{self.tile_id}"

    @classmethod
    def from_geojson(cls, feature):
        props = {k: _props(v) for k, v in (feature.get("properties") or {}).items()}
        return cls(geometry_from_geojson(feature.get("geometry")), props)

    @classmethod
    def from_feature(cls, feature, to_wgs84=None):
        """From a suggestions layer's feature (its JSON text fields decoded)."""
        props = {name: _props(feature[name]) for name in feature.fields().names()}
        props = {k: (None if v is None or (hasattr(v, "isNull") and v.isNull()) else v) for k, v in props.items()}
        g = QgsGeometry(feature.geometry())
        if to_wgs84 is not None:
            g.transform(to_wgs84)
        return cls(g, props)

    def point(self):
        """A point inside the tile (EPSG:4326 GeoJSON): what the label is posted as, so
        it labels exactly this tile."""
        return json.loads(self.geometry.pointOnSurface().asJson(7))

    def centre(self):
        lon, lat = self.props.get("center_lon"), self.props.get("center_lat")
        if lon is not None and lat is not None:
            return QgsPointXY(float(lon), float(lat))
        return self.geometry.centroid().asPoint()

    def top_probabilities(self, n=3):
        probs = self.props.get("probabilities") or {}
        if not isinstance(probs, dict):
            return []
        return sorted(((str(c), float(p)) for c, p in probs.items()), key=lambda cp: -cp[1])[:n]


class _LoadTask(QgsTask):
    """Reads the round history and the project's labels."""

    def __init__(self, project, name=None, url=None, token=None, timeout_ms=30_000):
        super().__init__(name or tr("NextTile: round history"), QgsTask.CanCancel)
        self.project, self.url, self.token, self.timeout_ms = project, url, token, timeout_ms
        self.rounds, self.labels, self.error = None, None, None

    def run(self):
        client = DaemonClient(self.url, self.token, timeout_ms=self.timeout_ms)
        try:
            self.work(client)
            self.rounds = client.get_json(f"/projects/{self.project}/rounds")
            self.labels = client.get_labels(self.project)
            return True
        except DaemonError as e:
            self.error = str(e)
            return False

    def work(self, client):
        """What runs before the history is read (nothing here)."""


class _RoundTask(_LoadTask):
    """POST /projects/{id}/rounds, wait for the job, then read the round history and
    the project's labels (for distances)."""

    def __init__(self, project, body, url=None, token=None):
        super().__init__(project, tr("NextTile: retrain"), url, token, timeout_ms=300_000)
        self.body = body
        self.result_json = None

    def work(self, client):
        started = client.post_json(f"/projects/{self.project}/rounds", self.body)
        job = client.wait_job(started["job"])
        self.result_json = job.get("result") or {}


class ReviewController(QObject):
    """Signals: `current_changed(index)` (len(items) once every tile has an answer or
    the end is reached), `answered(key, action)` (the item's `key`), `pending_changed(n)`,
    `message(text, is_error)`, `history_changed(rounds)`, `retraining(bool)`,
    `round_finished(result)`."""

    current_changed = pyqtSignal(int)
    answered = pyqtSignal(str, str)
    pending_changed = pyqtSignal(int)
    message = pyqtSignal(str, bool)
    history_changed = pyqtSignal(list)
    retraining = pyqtSignal(bool)
    round_finished = pyqtSignal(dict)

    def __init__(self, sender, project_id, classes, select_body=None, parent=None):
        super().__init__(parent)
        self.sender_ = sender
        self.project_id = int(project_id)
        self.classes = list(classes)
        self.select_body = select_body or (lambda: {"strategy": "auto", "budget": max(len(self.items), 1)})
        self.items = []
        self.index = 0
        self.answers = {}
        self.history = []
        self.rounds = []
        self.labelled_points = []
        self.busy = False
        self.retrain_wanted = False
        self.tasks = []
        self.distance = QgsDistanceArea()
        self.distance.setEllipsoid("EPSG:7030")
        self.keys = keymap(self.classes)
        sender.changed.connect(self._queue_changed)
        sender.failed.connect(self._send_failed)

    # --- the round's tiles ---------------------------------------------------------
    def load_features(self, features):
        """The round's suggestions (GeoJSON features or ReviewItems), in rank order."""
        items = [f if isinstance(f, ReviewItem) else ReviewItem.from_geojson(f) for f in features]
        self.items = sorted(items, key=lambda i: i.rank)
        self.index = 0
        self.answers = {}
        self.history = []
        self.current_changed.emit(self.index)

    def current(self):
        return self.items[self.index] if 0 <= self.index < len(self.items) else None

    def action_for_key(self, key_text):
        """The action a key is mapped to ("class:<name>", skip, unusable, undo,
        retrain), or None."""
        key = normalize_key(key_text)
        for action, k in self.keys.items():
            if k and k == key:
                return action
        return None

    def handle_key(self, key_text):
        """Performs the action mapped to `key_text`; False when the key is not mapped."""
        action = self.action_for_key(key_text)
        if action is None:
            return False
        self.perform(action)
        return True

    def perform(self, action):
        if action == UNDO:
            self.undo()
        elif action == RETRAIN:
            self.retrain()
        else:
            self.answer(action)

    def answer(self, action):
        """Answers the current tile: "class:<name>", skip or unusable; stored at once
        (queued on disk, sent in a batch), then the next tile."""
        item = self.current()
        if item is None or self.busy:
            return
        if action.startswith("class:"):
            cls = action[len("class:"):]
            if cls not in self.classes:
                self.message.emit(tr("{cls} is not one of this project's classes").format(cls=cls), True)
                return
        elif action == UNUSABLE:
            cls = UNUSABLE_CLASS
        elif action == SKIP:
            cls = None
        else:
            return
        if cls is not None:
            self.sender_.add(self.project_id, item.key, cls, item.point())
            self.labelled_points.append(item.centre())
        self.answers[item.key] = action
        self.history.append(self.index)
        self.answered.emit(item.key, action)
        self.index += 1
        self.current_changed.emit(self.index)
        if self.index >= len(self.items) and auto_retrain() and any(a != SKIP for a in self.answers.values()):
            self.retrain()

    def undo(self):
        """Back to the last answered tile, taking its answer back (a queued label is
        dropped; a stored one is withdrawn from the daemon)."""
        if not self.history or self.busy:
            return
        self.index = self.history.pop()
        item = self.items[self.index]
        action = self.answers.pop(item.key, None)
        if action is not None and action != SKIP:
            self.sender_.withdraw(self.project_id, item.key)
            centre = item.centre()
            for i in range(len(self.labelled_points) - 1, -1, -1):
                if self.labelled_points[i] == centre:
                    del self.labelled_points[i]
                    break
        self.answered.emit(item.key, "")
        self.current_changed.emit(self.index)

    def go_to(self, index):
        """Shows tile `index` (e.g. a skipped one, to answer it after all)."""
        if 0 <= index < len(self.items):
            self.index = index
            self.current_changed.emit(index)

    def skipped(self):
        return [i for i, it in enumerate(self.items) if self.answers.get(it.key) == SKIP]

    def counts(self):
        """(labelled, skipped, unusable, left) in this round."""
        values = list(self.answers.values())
        unusable = values.count(UNUSABLE)
        skipped = values.count(SKIP)
        labelled = len(values) - unusable - skipped
        return labelled, skipped, unusable, len(self.items) - len(values)

    def nearest_labelled_m(self, item):
        """Ground distance (m) from the tile's centre to the nearest labelled place."""
        centre = item.centre()
        best = None
        for p in self.labelled_points:
            d = self.distance.measureLine(centre, p)
            best = d if best is None else min(best, d)
        return best

    # --- daemon ------------------------------------------------------------------
    def _queue_changed(self, pending):
        self.pending_changed.emit(self.sender_.pending(self.project_id))
        if self.retrain_wanted and self.sender_.pending(self.project_id) == 0 and self.sender_.wait_idle():
            self._start_round()

    def _send_failed(self, message):
        self.message.emit(tr("labels kept on disk, sent when the daemon answers again: {error}").format(error=message), True)
        if self.retrain_wanted:
            self.retrain_wanted = False
            self.busy = False
            self.retraining.emit(False)

    def refresh(self):
        """Flushes queued labels, reads the round history and the project's labels."""
        self.sender_.flush()
        task = _LoadTask(self.project_id)

        def done():
            self._set_history(task.rounds)
            self._set_labels(task.labels)

        task.taskCompleted.connect(done)
        task.taskTerminated.connect(lambda: self.message.emit(task.error or tr("cancelled"), True))
        self._run(task)

    def _set_history(self, rounds):
        self.rounds = list(rounds or [])
        self.history_changed.emit(self.rounds)

    def _set_labels(self, fc):
        points = []
        for f in (fc or {}).get("features", []):
            g = geometry_from_geojson(f.get("geometry"))
            if not g.isEmpty():
                points.append(g.pointOnSurface().asPoint())
        self.labelled_points = points

    def _run(self, task):
        self.tasks = [t for t in self.tasks if t is not task][-8:] + [task]
        QgsApplication.taskManager().addTask(task)

    def retrain(self):
        """Closes the round: sends every queued label, then POST …/rounds, waits for the
        job and loads the next round's suggestions."""
        if self.busy:
            return
        self.busy = True
        self.retrain_wanted = True
        self.retraining.emit(True)
        if self.sender_.pending(self.project_id) == 0 and self.sender_.wait_idle():
            self._start_round()
        else:
            self.sender_.flush()

    def _start_round(self):
        self.retrain_wanted = False
        body = dict(self.select_body())
        client = DaemonClient()
        task = _RoundTask(self.project_id, body, client.url, client.token)

        def done():
            self.busy = False
            self.retraining.emit(False)
            self._set_labels(task.labels)
            self._set_history(task.rounds)
            result = task.result_json or {}
            self.load_features((result.get("suggestions") or {}).get("features", []))
            self.round_finished.emit(result)
            agreement = result.get("agreement") or {}
            self.message.emit(
                tr("round {n}: trained on {tiles} tiles; the previous head agreed on {agreed} of {compared}").format(
                    n=result.get("round"), tiles=(result.get("retrained") or {}).get("labelled_tiles"),
                    agreed=agreement.get("agreed", 0), compared=agreement.get("compared", 0)),
                False,
            )

        def failed():
            self.busy = False
            self.retraining.emit(False)
            self.message.emit(task.error or tr("retraining was cancelled"), True)

        task.taskCompleted.connect(done)
        task.taskTerminated.connect(failed)
        self._run(task)
