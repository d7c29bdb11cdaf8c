"""`nexttile:score`: adds a raster to a project, scores it and downloads the heatmap."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..translation import tr
from .base import NextTileAlgorithm, local_raster_path


class ScoreAlgorithm(NextTileAlgorithm):
    """Adds a raster to a project, scores it and downloads the heatmap."""

    def name(self):
        return "score"

    def displayName(self):
        return tr("Score a raster (uncertainty heatmap)")

    def shortHelpString(self):
        return tr(
            "Adds the raster (and, for multi-modal encoders, the second raster, which the daemon warps onto "
            "the first one's grid) to the project on the daemon, waits for the scoring job (progress and "
            "cancel work) and downloads the uncertainty heatmap (GeoTIFF, scene CRS).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", tr("Project id"), QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterRasterLayer("RASTER", tr("Raster (a file the daemon may read)")))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "PAIR", tr("Second raster for multi-modal encoders (e.g. Sentinel-1 beside Sentinel-2)"), optional=True))
        self.add_aoi_params()
        self.addParameter(QgsProcessingParameterRasterDestination("HEATMAP", tr("Uncertainty heatmap")))
        self.addOutput(QgsProcessingOutputNumber("SCENE", tr("Scene id")))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        path = local_raster_path(self.parameterAsRasterLayer(parameters, "RASTER", context))
        client = self.client()
        body = {"path": path}
        pair = self.parameterAsRasterLayer(parameters, "PAIR", context)
        if pair is not None:
            body["pair"] = local_raster_path(pair)
        aoi = self.aoi(parameters, context)
        if aoi is not None:
            body["aoi"] = aoi
        added = client.post_json(f"/projects/{pid}/scenes", body)
        feedback.pushInfo(tr("scene {scene}: job {job}").format(scene=added["scene"]["id"], job=added["job"]))
        client.wait_job(added["job"], feedback)
        scene = added["scene"]["id"]
        out = self.parameterAsOutputLayer(parameters, "HEATMAP", context)
        with open(out, "wb") as f:
            f.write(client.get_bytes(f"/projects/{pid}/scenes/{scene}/heatmap"))
        return {"HEATMAP": out, "SCENE": scene}
