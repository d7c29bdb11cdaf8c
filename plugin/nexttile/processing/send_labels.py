"""`nexttile:send_labels`: posts features with a class to the project."""

import json

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
)

from ..layers import wgs84
from ..translation import tr
from .base import NextTileAlgorithm


class SendLabelsAlgorithm(NextTileAlgorithm):
    """Posts features with a class to the project."""

    def name(self):
        return "send_labels"

    def displayName(self):
        return tr("Send labels")

    def shortHelpString(self):
        return tr(
            "Sends every feature whose class field is filled (points or polygons, any CRS) to the project's "
            "labels. Polygons from the suggestions layer are sent as a point inside them, so each labels exactly "
            "its tile; untick that to send drawn polygons as drawn. The class 'unusable' marks a tile that "
            "cannot be labelled (never suggested again, never trained on).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", tr("Project id"), QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterFeatureSource("INPUT", tr("Labelled features"), [QgsProcessing.TypeVectorAnyGeometry]))
        self.addParameter(QgsProcessingParameterField("CLASS_FIELD", tr("Class field"), "class", "INPUT"))
        self.addParameter(QgsProcessingParameterBoolean("AS_POINTS", tr("Send polygons as a point inside them"), True))
        self.addOutput(QgsProcessingOutputNumber("SENT", tr("Labels stored")))
        self.addOutput(QgsProcessingOutputString("IDS", tr("Label ids (JSON)")))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        source = self.parameterAsSource(parameters, "INPUT", context)
        field = self.parameterAsString(parameters, "CLASS_FIELD", context) or "class"
        as_points = self.parameterAsBool(parameters, "AS_POINTS", context)
        to_wgs84 = QgsCoordinateTransform(source.sourceCrs(), wgs84(), context.transformContext())
        features = []
        for f in source.getFeatures(QgsFeatureRequest()):
            value = f[field]
            if value is None or str(value).strip() in ("", "NULL"):
                continue
            g = f.geometry()
            if g.isEmpty():
                continue
            if as_points and g.type() == 2:  # polygon
                g = g.pointOnSurface()
            g.transform(to_wgs84)
            props = {"class": str(value).strip(), "source": "qgis"}
            features.append({"type": "Feature", "properties": props, "geometry": json.loads(g.asJson(7))})
        if not features:
            raise QgsProcessingException(
                tr("no feature has a value in '{field}': fill the class of the tiles you labelled first").format(field=field))
        stored = self.client().post_json(f"/projects/{pid}/labels", {"type": "FeatureCollection", "features": features})
        return {"SENT": len(stored["ids"]), "IDS": json.dumps(stored["ids"])}
