"""The labels the analyst gave that the daemon has not acknowledged yet, in a JSON file
(the QGIS profile folder by default): every answer is written here before any network
call, so closing QGIS, a crash or a stopped daemon loses nothing; the file is flushed
to the daemon in small batches, and again on the next connect or load.

Each operation is {"key", "op": "label"|"delete", "url", "project", "tile_id", ...}
(`tile_id`: the review item's key, `<scene id>:<tile id>` for picks over every scene
of a project, whose tile ids repeat across scenes):
"label" carries the class and a point inside the tile (EPSG:4326); "delete" withdraws
the label an undo took back after the daemon had stored it. `sent` remembers the label
id the daemon gave each tile, so an undo can withdraw it later. No Qt here: plain
Python, testable alone."""

import json
import os
import tempfile
import uuid


def _tile_key(url, project, tile_id):
    return f"{url}|{int(project)}|{tile_id}"


class PendingQueue:
    """The on-disk queue. Not thread-safe: use it from the UI thread only (network
    tasks get copies of operations and report back)."""

    def __init__(self, path):
        self.path = path
        self.ops = []
        self.sent = {}
        self.load()

    def load(self):
        """Reads the file (missing: empty). A file that is not ours is kept aside, never
        overwritten, and reading starts empty."""
        self.ops, self.sent = [], {}
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        try:
            doc = json.loads(text) if text.strip() else {}
        except ValueError:
            aside = self.path + ".unreadable"
            os.replace(self.path, aside)
            raise ValueError(
                f"the pending-labels file {self.path} is not JSON; it was moved to {aside} "
                "(its labels can be recovered from there)"
            ) from None
        self.ops = [op for op in doc.get("pending", []) if isinstance(op, dict) and op.get("op") in ("label", "delete")]
        self.sent = {str(k): int(v) for k, v in (doc.get("sent") or {}).items()}

    def save(self):
        """Writes the queue atomically (temporary file, fsync, rename)."""
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        # Keep the last 5,000 tile → label id entries (enough to undo within a session).
        if len(self.sent) > 5000:
            self.sent = dict(list(self.sent.items())[-5000:])
        fd, tmp = tempfile.mkstemp(prefix=".pending-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "pending": self.ops, "sent": self.sent}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def add_label(self, url, project, tile_id, cls, geometry):
        """Queues a label (written to disk before this returns); returns its op."""
        op = {"key": uuid.uuid4().hex, "op": "label", "url": url, "project": int(project),
              "tile_id": tile_id, "class": cls, "geometry": geometry}
        self.ops.append(op)
        self.save()
        return op

    def withdraw(self, url, project, tile_id, in_flight=()):
        """Takes back the answer given to a tile: drops its label while still queued
        (and not being sent), else queues a "delete" of the stored label. Returns
        "dropped", "delete" or None (nothing to withdraw)."""
        for op in reversed(self.ops):
            if op["op"] == "label" and op["url"] == url and op["project"] == int(project) and op["tile_id"] == tile_id:
                if op["key"] not in in_flight:
                    self.ops.remove(op)
                    self.save()
                    return "dropped"
                break
        key = _tile_key(url, project, tile_id)
        if key in self.sent or any(o["key"] in in_flight and o.get("tile_id") == tile_id for o in self.ops):
            self.ops.append({"key": uuid.uuid4().hex, "op": "delete", "url": url, "project": int(project), "tile_id": tile_id})
            self.save()
            return "delete"
        return None

    def pending(self, url=None, project=None):
        """The queued operations (for one daemon URL and project when given)."""
        return [o for o in self.ops if (url is None or o["url"] == url) and (project is None or o["project"] == int(project))]

    def next_batch(self, url, size):
        """The next request to make for `url`: up to `size` consecutive labels of one
        project, or one delete; [] when none is queued."""
        ops = [o for o in self.ops if o["url"] == url]
        if not ops:
            return []
        first = ops[0]
        if first["op"] == "delete":
            return [first]
        batch = []
        for o in ops:
            if o["op"] != "label" or o["project"] != first["project"] or len(batch) >= size:
                break
            batch.append(o)
        return batch

    def label_id(self, url, project, tile_id):
        """The id the daemon gave the label of a tile, when known."""
        return self.sent.get(_tile_key(url, project, tile_id))

    def done(self, ops, ids=None):
        """The daemon acknowledged `ops` (labels: with these ids, in order)."""
        keys = {o["key"] for o in ops}
        for o, label_id in zip([o for o in ops if o["op"] == "label"], ids or []):
            self.sent[_tile_key(o["url"], o["project"], o["tile_id"])] = int(label_id)
        for o in ops:
            if o["op"] == "delete":
                self.sent.pop(_tile_key(o["url"], o["project"], o["tile_id"]), None)
        self.ops = [o for o in self.ops if o["key"] not in keys]
        self.save()
