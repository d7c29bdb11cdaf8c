"""`nexttile:create_project`: creates (or finds) a project."""

import json

from qgis.core import QgsProcessingOutputNumber, QgsProcessingOutputString, QgsProcessingParameterString

from ..translation import tr
from .base import NextTileAlgorithm


class CreateProjectAlgorithm(NextTileAlgorithm):
    """Creates (or finds) a project."""

    def name(self):
        return "create_project"

    def displayName(self):
        return tr("Create project")

    def shortHelpString(self):
        return tr(
            "Creates a NextTile project, or returns the project of that name if it exists. Encoder and head are "
            "ONNX files on the daemon's machine under its model folders (its onnx/ folder and any "
            "--model-root; default: its demo models); a multi-modal encoder (e.g. Sentinel-1 + "
            "Sentinel-2) needs a second raster when scoring.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterString("NAME", tr("Project name")))
        self.addParameter(QgsProcessingParameterString("ENCODER", tr("Encoder ONNX (daemon's path; empty = demo)"), optional=True))
        self.addParameter(QgsProcessingParameterString("HEAD", tr("Head ONNX (daemon's path; empty = demo)"), optional=True))
        self.addOutput(QgsProcessingOutputNumber("PROJECT", tr("Project id")))
        self.addOutput(QgsProcessingOutputString("CLASSES", tr("Classes (JSON)")))

    def perform(self, parameters, context, feedback):
        name = self.parameterAsString(parameters, "NAME", context)
        client = self.client()
        existing = [p for p in client.get_json("/projects") if p["name"] == name]
        body = {"name": name}
        for key in ("ENCODER", "HEAD"):
            value = self.parameterAsString(parameters, key, context).strip()
            if value:
                body[key.lower()] = value
        project = existing[0] if existing else client.post_json("/projects", body)
        return {"PROJECT": project["id"], "CLASSES": json.dumps(project["classes"])}
