"""`nexttile:export`: survey exports (GeoPackage / GPX / CSV in a visit order)."""

import os

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..translation import tr
from .base import EXPORT_FORMATS, NextTileAlgorithm


class ExportAlgorithm(NextTileAlgorithm):
    """Survey exports."""

    def name(self):
        return "export"

    def displayName(self):
        return tr("Export for a field survey (GeoPackage / GPX / CSV)")

    def shortHelpString(self):
        return tr(
            "Downloads the latest suggestions in a short visit order: a GeoPackage with suggestions and labels "
            "layers (QField), GPX waypoints, or a CSV with lon/lat, rank and visit order.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", tr("Project id"), QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterEnum("FORMAT", tr("Format"), EXPORT_FORMATS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", tr("File"), "GeoPackage (*.gpkg);;GPX (*.gpx);;CSV (*.csv)"))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        fmt = EXPORT_FORMATS[self.parameterAsEnum(parameters, "FORMAT", context)]
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not out.lower().endswith("." + fmt):
            out = os.path.splitext(out)[0] + "." + fmt
        with open(out, "wb") as f:
            f.write(self.client().get_bytes(f"/projects/{pid}/export?format={fmt}"))
        return {"OUTPUT": out}
