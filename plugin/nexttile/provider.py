"""The `nexttile` Processing provider."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .processing import ALGORITHMS


class NextTileProvider(QgsProcessingProvider):
    """Provider id `nexttile`: create_project, score, suggest, send_labels, retrain, export."""

    def id(self):
        return "nexttile"

    def name(self):
        return "NextTile"

    def icon(self):
        return QIcon(os.path.join(os.path.dirname(__file__), "icon.svg"))

    def loadAlgorithms(self):
        for alg in ALGORITHMS:
            self.addAlgorithm(alg())
