"""The daemon's HTTP API through QGIS's network stack (proxies and SSL settings apply)."""

import json
import time

from qgis.core import QgsBlockingNetworkRequest, QgsSettings
from qgis.PyQt.QtCore import QByteArray, QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest

from .translation import tr

SETTINGS_URL = "nexttile/url"
SETTINGS_TOKEN = "nexttile/token"
SETTINGS_BINARY = "nexttile/binary"
DEFAULT_URL = "http://127.0.0.1:7878"


class DaemonError(Exception):
    """An error to show the analyst: the daemon's own message, or what to do; `status`
    is the HTTP status when the daemon answered with an error."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def settings_url():
    """The daemon URL from QGIS settings."""
    return QgsSettings().value(SETTINGS_URL, DEFAULT_URL, type=str) or DEFAULT_URL


def settings_token():
    """The bearer token from QGIS settings (never written into project files)."""
    return QgsSettings().value(SETTINGS_TOKEN, "", type=str) or ""


def save_settings(url, token):
    """Stores the daemon URL and token in the user's QGIS settings."""
    s = QgsSettings()
    s.setValue(SETTINGS_URL, url.rstrip("/"))
    s.setValue(SETTINGS_TOKEN, token)


class DaemonClient:
    """Calls the NextTile daemon. Every call blocks the calling thread: run it from a
    QgsTask or a Processing algorithm, never from the UI thread."""

    def __init__(self, url=None, token=None, timeout_ms=300_000):
        self.url = (url or settings_url()).rstrip("/")
        self.token = settings_token() if token is None else token
        self.timeout_ms = timeout_ms

    def _request(self, path, content_type=None):
        req = QNetworkRequest(QUrl(self.url + path))
        if self.token:
            req.setRawHeader(b"Authorization", ("Bearer " + self.token).encode())
        if content_type:
            req.setHeader(QNetworkRequest.ContentTypeHeader, content_type)
        req.setTransferTimeout(self.timeout_ms)
        return req

    def _send(self, method, path, body=None, content_type="application/json"):
        blocking = QgsBlockingNetworkRequest()
        req = self._request(path, content_type if body is not None else None)
        if method == "GET":
            err = blocking.get(req, forceRefresh=True)
        elif method == "POST":
            err = blocking.post(req, QByteArray(body or b""))
        elif method == "DELETE":
            err = blocking.deleteResource(req)
        else:
            raise DaemonError(tr("unsupported method {method}").format(method=method))
        reply = blocking.reply()
        status = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
        content = bytes(reply.content())
        if status is None:
            raise DaemonError(tr(
                "the NextTile daemon is not reachable at {url} ({error}). "
                "Start it with `nexttile serve --root <folder with your rasters>`, or set its URL "
                "in NextTile > Settings."
            ).format(url=self.url, error=blocking.errorMessage()))
        if int(status) >= 400:
            message = None
            try:
                message = json.loads(content.decode("utf-8")).get("error")
            except (ValueError, AttributeError):
                pass
            if int(status) == 401:
                message = tr("{message} (check the token in NextTile > Settings)").format(message=message or tr("unauthorized"))
            raise DaemonError(tr("NextTile daemon: {message} (HTTP {status})").format(
                message=message or content[:300].decode("utf-8", "replace"), status=status), status=int(status))
        if err != QgsBlockingNetworkRequest.NoError and not content:
            raise DaemonError(tr("NextTile daemon: {error}").format(error=blocking.errorMessage()))
        return int(status), content

    def get_json(self, path):
        """GET returning parsed JSON."""
        return json.loads(self._send("GET", path)[1].decode("utf-8"))

    def get_bytes(self, path):
        """GET returning raw bytes (heatmap, exports)."""
        return self._send("GET", path)[1]

    def get_labels(self, project_id, limit=1000, bbox=None):
        """Every label of a project as one GeoJSON FeatureCollection (EPSG:4326),
        following the daemon's pages (`next`) of at most `limit` labels each; `bbox`
        (min_lon, min_lat, max_lon, max_lat) keeps those that meet it."""
        path = f"/projects/{int(project_id)}/labels?limit={int(limit)}"
        if bbox is not None:
            path += "&bbox=" + ",".join(repr(float(v)) for v in bbox)
        features = []
        while path:
            page = self.get_json(path)
            features.extend(page.get("features") or [])
            path = page.get("next")
        return {"type": "FeatureCollection", "features": features}

    def post_json(self, path, payload):
        """POST a JSON body, returning parsed JSON."""
        body = json.dumps(payload).encode("utf-8")
        return json.loads(self._send("POST", path, body)[1].decode("utf-8") or "null")

    def delete(self, path):
        """DELETE."""
        self._send("DELETE", path)

    def health(self):
        """Version and execution provider."""
        return self.get_json("/health")

    def wait_job(self, job_id, feedback=None, poll_s=0.3):
        """Polls a job until it ends; reports progress and cancels it when the
        Processing feedback is cancelled. Returns the finished job."""
        while True:
            job = self.get_json(f"/jobs/{job_id}")
            status = job.get("status")
            if feedback is not None:
                total = job.get("total") or 0
                if total:
                    feedback.setProgress(100.0 * (job.get("done") or 0) / total)
                if feedback.isCanceled():
                    self.delete(f"/jobs/{job_id}")
                    raise DaemonError(tr("cancelled"))
            if status == "done":
                return job
            if status in ("failed", "cancelled", "interrupted"):
                raise DaemonError(tr("NextTile job {job} {status}: {message}").format(job=job_id, status=status, message=job.get("message")))
            time.sleep(poll_s)


class LocalDaemon:
    """A `nexttile serve` the plugin starts itself when none answers (Settings: the
    binary's path), on the configured URL's loopback port, serving `root`; stopped when
    the plugin unloads."""

    def __init__(self, binary, root, url=None, data_dir=None):
        import subprocess

        from qgis.PyQt.QtCore import QUrl as _QUrl

        parsed = _QUrl(url or settings_url())
        port = parsed.port(7878)
        if parsed.host() not in ("127.0.0.1", "localhost"):
            raise DaemonError(tr("the plugin only starts a daemon on this machine: set the URL to http://127.0.0.1:<port>"))
        args = [binary, "serve", "--bind", f"127.0.0.1:{port}", "--root", root]
        if data_dir:
            args += ["--data-dir", data_dir]
        import tempfile

        # stderr goes to a file: a pipe nobody reads would block the daemon once full.
        self.log = tempfile.NamedTemporaryFile(prefix="nexttile-daemon-", suffix=".log", delete=False)
        try:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        except OSError as e:
            self.log.close()
            raise DaemonError(tr("cannot start {binary}: {error}. Set the path of the nexttile binary in NextTile > Settings.").format(
                binary=binary, error=e)) from e
        line = self.proc.stdout.readline()
        self.proc.stdout.close()
        if not line.startswith("listening on "):
            self.stop()
            with open(self.log.name, encoding="utf-8", errors="replace") as f:
                err = f.read()[-500:]
            raise DaemonError(tr("the local daemon did not start: {error}").format(error=err.strip() or line.strip()))
        self.url = line.split()[-1]

    def stop(self):
        """Stops the daemon (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:  # noqa: BLE001 - any timeout: kill
                self.proc.kill()
                self.proc.wait()
        self.log.close()
