"""Delivers the pending-labels queue to the daemon: one request at a time in a QgsTask
(never on the UI thread), in small batches; what fails stays queued for the next try
(the next answer, Connect, or the next load of the plugin)."""

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from ..client import DaemonClient, DaemonError, settings_url
from ..settings import batch_size, queue_file
from ..translation import tr
from .queue import PendingQueue


class _SendTask(QgsTask):
    """Posts one batch of labels, or withdraws one label, on a worker thread."""

    def __init__(self, url, token, ops, label_id):
        super().__init__(tr("NextTile: send labels"), QgsTask.CanCancel)
        self.url, self.token, self.ops, self.label_id = url, token, ops, label_id
        self.ids, self.error = None, None

    def run(self):
        client = DaemonClient(self.url, self.token, timeout_ms=30_000)
        try:
            first = self.ops[0]
            if first["op"] == "delete":
                if self.label_id is not None:
                    try:
                        client.delete(f"/projects/{first['project']}/labels/{self.label_id}")
                    except DaemonError as e:
                        if e.status != 404:  # already gone: nothing to withdraw
                            raise
                return True
            features = [
                {"type": "Feature", "geometry": o["geometry"],
                 "properties": {"class": o["class"], "source": "qgis-review", "tile_id": o["tile_id"]}}
                for o in self.ops
            ]
            stored = client.post_json(f"/projects/{first['project']}/labels", {"type": "FeatureCollection", "features": features})
            self.ids = stored["ids"]
            return True
        except DaemonError as e:
            self.error = str(e)
            return False


class LabelSender(QObject):
    """The plugin's one owner of the queue file. `changed(pending)` after every change;
    `failed(message)` when the daemon did not take a batch (it stays queued)."""

    changed = pyqtSignal(int)
    failed = pyqtSignal(str)
    delivered = pyqtSignal(list)

    def __init__(self, path=None, parent=None):
        super().__init__(parent)
        self.queue = PendingQueue(path or queue_file())
        self.task = None
        self.offline = False
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(1500)
        self.timer.timeout.connect(self.flush)

    @staticmethod
    def url():
        return settings_url().rstrip("/")

    def in_flight(self):
        return {o["key"] for o in self.task.ops} if self.task is not None else set()

    def pending(self, project=None):
        return len(self.queue.pending(self.url(), project))

    def add(self, project, tile_id, cls, geometry):
        """Queues a label on disk, then sends when a batch is full or after a pause."""
        self.queue.add_label(self.url(), project, tile_id, cls, geometry)
        self.changed.emit(self.pending())
        if len(self.queue.next_batch(self.url(), batch_size())) >= batch_size():
            self.flush()
        else:
            self.timer.start()

    def withdraw(self, project, tile_id):
        """Takes back a tile's label, queued or stored."""
        result = self.queue.withdraw(self.url(), project, tile_id, self.in_flight())
        self.changed.emit(self.pending())
        if result == "delete":
            self.timer.start()
        return result

    def flush(self):
        """Sends the next batch unless one is on its way; chains until the queue for
        this daemon is empty or a request fails."""
        if self.task is not None:
            return
        url = self.url()
        ops = self.queue.next_batch(url, batch_size())
        if not ops:
            self.changed.emit(0)
            return
        label_id = self.queue.label_id(url, ops[0]["project"], ops[0]["tile_id"]) if ops[0]["op"] == "delete" else None
        from ..client import settings_token

        task = _SendTask(url, settings_token(), ops, label_id)
        task.taskCompleted.connect(lambda: self._finished(task, True))
        task.taskTerminated.connect(lambda: self._finished(task, False))
        self.task = task
        QgsApplication.taskManager().addTask(task)

    def _finished(self, task, ok):
        if self.task is not task:
            return
        self.task = None
        if ok:
            self.offline = False
            self.queue.done(task.ops, task.ids)
            self.delivered.emit([o["tile_id"] for o in task.ops])
            self.changed.emit(self.pending())
            self.flush()
        else:
            self.offline = True
            self.changed.emit(self.pending())
            self.failed.emit(task.error or tr("sending labels was cancelled"))

    def wait_idle(self):
        """Whether nothing is being sent (for callers that chain work after a flush)."""
        return self.task is None
