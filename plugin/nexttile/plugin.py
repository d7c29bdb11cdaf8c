"""Plugin entry: registers the Processing provider and the dock."""

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt

from .provider import NextTileProvider


class NextTilePlugin:
    """What QGIS loads."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.dock = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        self.provider = NextTileProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()
        from .dock import NextTileDock

        self.dock = NextTileDock(self.iface)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)

    def unload(self):
        if self.dock is not None:
            self.dock.stop_local_daemon()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
