"""`nexttile:score`: adds a raster to a project, scores it and downloads the heatmap."""

import json

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..translation import tr
from .base import NextTileAlgorithm, local_raster_path

#: The daemon's sensor presets (`sensor` of POST /projects/{id}/scenes, the CLI's
#: --sensor; the daemon checks the name), after "from the raster" (index 0).
SENSORS = ["s2-l1c", "s2-l2a", "landsat8", "landsat9", "landsat7", "reflectance", "rgb"]


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
            "cancel work) and downloads the uncertainty heatmap (GeoTIFF, scene CRS). A sensor preset gives "
            "the band order and scaling of rasters that are not Sentinel-2 L1C stacks (e.g. rgb for an 8-bit "
            "orthophoto); resampling is auto (to the encoder's resolution when the pixels differ by more than "
            "1.5x), off, or a pixel size in metres. WARNINGS lists what the daemon found wrong with the input "
            "(e.g. an 8-bit image fed with a reflectance scale), as JSON.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", tr("Project id"), QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterRasterLayer("RASTER", tr("Raster (a file the daemon may read)")))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "PAIR", tr("Second raster for multi-modal encoders (e.g. Sentinel-1 beside Sentinel-2)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            "SENSOR", tr("Sensor preset"), [tr("From the raster")] + SENSORS, defaultValue=0, optional=True))
        self.addParameter(QgsProcessingParameterString(
            "RESAMPLE", tr("Resample: auto, off or metres"), defaultValue="auto", optional=True))
        self.add_aoi_params()
        self.addParameter(QgsProcessingParameterRasterDestination("HEATMAP", tr("Uncertainty heatmap")))
        self.addOutput(QgsProcessingOutputNumber("SCENE", tr("Scene id")))
        self.addOutput(QgsProcessingOutputString("WARNINGS", tr("Input warnings (JSON list)")))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        path = local_raster_path(self.parameterAsRasterLayer(parameters, "RASTER", context))
        client = self.client()
        body = {"path": path}
        pair = self.parameterAsRasterLayer(parameters, "PAIR", context)
        if pair is not None:
            body["pair"] = local_raster_path(pair)
        sensor = self.parameterAsEnum(parameters, "SENSOR", context)
        if 0 < sensor <= len(SENSORS):
            body["sensor"] = SENSORS[sensor - 1]
        resample = (self.parameterAsString(parameters, "RESAMPLE", context) or "").strip()
        if resample and resample != "auto":
            body["resample"] = resample
        aoi = self.aoi(parameters, context)
        if aoi is not None:
            body["aoi"] = aoi
        added = client.post_json(f"/projects/{pid}/scenes", body)
        feedback.pushInfo(tr("scene {scene}: job {job}").format(scene=added["scene"]["id"], job=added["job"]))
        job = client.wait_job(added["job"], feedback)
        warnings = [str(w) for w in ((job.get("result") or {}).get("warnings") or [])]
        for w in warnings:
            feedback.pushWarning(w)
        scene = added["scene"]["id"]
        out = self.parameterAsOutputLayer(parameters, "HEATMAP", context)
        with open(out, "wb") as f:
            f.write(client.get_bytes(f"/projects/{pid}/scenes/{scene}/heatmap"))
        return {"HEATMAP": out, "SCENE": scene, "WARNINGS": json.dumps(warnings)}
