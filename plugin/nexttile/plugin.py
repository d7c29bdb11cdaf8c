"""Plugin entry: registers the Processing provider, the dock, and the sender that
delivers labels left waiting by an earlier session."""

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import QCoreApplication, Qt

from .provider import NextTileProvider
from .translation import install_translator


class NextTilePlugin:
    """What QGIS loads."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.dock = None
        self.sender = None
        # Strings in the user's language when i18n/ has a .qm for it.
        self.translator = install_translator()

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        self.provider = NextTileProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()
        from .dock import NextTileDock
        from .review.sender import LabelSender

        try:
            self.sender = LabelSender()
        except (OSError, ValueError) as e:
            # An unreadable queue file was moved aside (its path is in the message).
            QgsMessageLog.logMessage(str(e), "NextTile", Qgis.Critical)
            self.sender = LabelSender()
        self.dock = NextTileDock(self.iface, sender=self.sender)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        # Labels an earlier session left waiting go as soon as the daemon answers.
        self.sender.flush()

    def unload(self):
        if self.dock is not None:
            self.dock.close_review()
            self.dock.controller.stop_local_daemon()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.sender is not None:
            # Whatever is still queued stays in the file for the next load.
            self.sender.timer.stop()
            self.sender.deleteLater()
            self.sender = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.translator is not None:
            QCoreApplication.removeTranslator(self.translator)
            self.translator = None
