"""Processing algorithms of the `nexttile` provider: each is one daemon call (plus job
polling), so they work in the toolbox, the graphical modeler and qgis_process."""

import json
import os

from qgis.core import (
    QgsGeometry,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .client import DaemonClient, DaemonError
from .layers import aoi_feature_collection, wgs84, write_feature_collection

# The Processing enums need a list when QGIS loads the plugin (no daemon yet); the dock
# shows the daemon's own list (GET /health "strategies") and passes the name. "auto"
# (TypiClust while labels are few, then margin + clustering) is the default.
STRATEGIES = ["auto", "top_k", "random", "coreset", "clustering", "mcfps", "typiclust", "probcover"]
# "default": the daemon chooses (margin; least_confidence for mcfps).
METRICS = ["default", "least_confidence", "entropy", "bald", "margin", "variation_ratio"]
EXPORT_FORMATS = ["gpkg", "gpx", "csv"]


def local_raster_path(layer):
    """The file behind a raster layer, or a clear error for layers the daemon cannot
    read (memory, WMS/WCS, XYZ, virtual files)."""
    if layer is None or not layer.isValid():
        raise QgsProcessingException(
            "the raster layer is not valid (a web service that does not answer, or a moved "
            "file?). Save it as a GeoTIFF in a folder the daemon serves (nexttile serve --root ...) "
            "and use that layer."
        )
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"the daemon reads raster files only, and '{layer.name()}' comes from the "
            f"'{layer.providerType()}' provider (e.g. a web service). Save it as a GeoTIFF "
            "in a folder the daemon serves (nexttile serve --root ...) and use that layer."
        )
    path = layer.source().split("|")[0]
    if path.startswith("/vsi") or not os.path.isfile(path):
        raise QgsProcessingException(
            f"'{layer.name()}' is not a local file ({path}). Save it as a GeoTIFF in a folder "
            "the daemon serves (nexttile serve --root ...) and use that layer."
        )
    return path


class NextTileAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: the client, error translation, group."""

    def group(self):
        return "Active learning"

    def groupId(self):
        return "active_learning"

    def createInstance(self):
        return type(self)()

    def client(self):
        return DaemonClient()

    def processAlgorithm(self, parameters, context, feedback):
        try:
            return self.perform(parameters, context, feedback)
        except DaemonError as e:
            raise QgsProcessingException(str(e)) from e

    def select_body(self, parameters, context):
        name = (self.parameterAsString(parameters, "STRATEGY_NAME", context) or "").strip()
        metric = METRICS[self.parameterAsEnum(parameters, "METRIC", context)]
        body = {
            "strategy": name or STRATEGIES[self.parameterAsEnum(parameters, "STRATEGY", context)],
            "budget": self.parameterAsInt(parameters, "BUDGET", context),
            "mc_passes": self.parameterAsInt(parameters, "MC_PASSES", context),
            "min_spacing_m": self.parameterAsDouble(parameters, "MIN_SPACING", context),
        }
        if metric != "default":
            body["metric"] = metric
        scene = self.parameterAsInt(parameters, "SCENE", context)
        if scene > 0:
            body["scene_id"] = scene
        aoi = self.aoi(parameters, context)
        if aoi is not None:
            body["aoi"] = aoi
        return body

    def aoi(self, parameters, context):
        """The optional AOI: selected/all polygons of AOI_LAYER, else EXTENT, as
        GeoJSON in EPSG:4326; None when neither is given."""
        geoms, crs = [], None
        if parameters.get("AOI_LAYER"):
            source = self.parameterAsSource(parameters, "AOI_LAYER", context)
            if source is not None:
                crs = source.sourceCrs()
                geoms = [f.geometry() for f in source.getFeatures()]
        if not geoms and parameters.get("EXTENT"):
            crs = self.parameterAsExtentCrs(parameters, "EXTENT", context)
            rect = self.parameterAsExtent(parameters, "EXTENT", context)
            if not rect.isEmpty():
                geoms = [QgsGeometry.fromRect(rect)]
        if not geoms:
            return None
        fc = aoi_feature_collection(geoms, crs, context.transformContext())
        if not fc["features"]:
            raise QgsProcessingException("the AOI layer has no polygon: draw the area as a polygon")
        return fc

    def add_aoi_params(self):
        self.addParameter(QgsProcessingParameterFeatureSource("AOI_LAYER", "Limit to these polygons (selected features only when 'Selected features only' is ticked)", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Limit to this extent (e.g. the map canvas)", optional=True))

    def add_select_params(self):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", "Project id", QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterNumber("SCENE", "Scene id (0 = the project's latest)", QgsProcessingParameterNumber.Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterEnum("STRATEGY", "Strategy", STRATEGIES, defaultValue=0))
        self.addParameter(QgsProcessingParameterString("STRATEGY_NAME", "Strategy by name (overrides the list; any the daemon offers)", optional=True))
        self.addParameter(QgsProcessingParameterEnum("METRIC", "Uncertainty metric", METRICS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("BUDGET", "Tiles to suggest", QgsProcessingParameterNumber.Integer, 20, minValue=1))
        self.addParameter(QgsProcessingParameterNumber("MC_PASSES", "MC-dropout passes", QgsProcessingParameterNumber.Integer, 20, minValue=1))
        self.addParameter(QgsProcessingParameterNumber("MIN_SPACING", "Minimum ground spacing (m)", QgsProcessingParameterNumber.Double, 0.0, minValue=0.0))
        self.add_aoi_params()


class CreateProjectAlgorithm(NextTileAlgorithm):
    """Creates (or finds) a project."""

    def name(self):
        return "create_project"

    def displayName(self):
        return "Create project"

    def shortHelpString(self):
        return ("Creates a NextTile project, or returns the project of that name if it exists. Encoder and head are "
                "ONNX files on the daemon's machine under its model folders (its onnx/ folder and any "
                "--model-root; default: its demo models); a multi-modal encoder (e.g. Sentinel-1 + "
                "Sentinel-2) needs a second raster when scoring.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterString("NAME", "Project name"))
        self.addParameter(QgsProcessingParameterString("ENCODER", "Encoder ONNX (daemon's path; empty = demo)", optional=True))
        self.addParameter(QgsProcessingParameterString("HEAD", "Head ONNX (daemon's path; empty = demo)", optional=True))
        self.addOutput(QgsProcessingOutputNumber("PROJECT", "Project id"))
        self.addOutput(QgsProcessingOutputString("CLASSES", "Classes (JSON)"))

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


class ScoreAlgorithm(NextTileAlgorithm):
    """Adds a raster to a project, scores it and downloads the heatmap."""

    def name(self):
        return "score"

    def displayName(self):
        return "Score a raster (uncertainty heatmap)"

    def shortHelpString(self):
        return "Adds the raster (and, for multi-modal encoders, the second raster, which the daemon warps onto the first one's grid) to the project on the daemon, waits for the scoring job (progress and cancel work) and downloads the uncertainty heatmap (GeoTIFF, scene CRS)."

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", "Project id", QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterRasterLayer("RASTER", "Raster (a file the daemon may read)"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "PAIR", "Second raster for multi-modal encoders (e.g. Sentinel-1 beside Sentinel-2)", optional=True))
        self.add_aoi_params()
        self.addParameter(QgsProcessingParameterRasterDestination("HEATMAP", "Uncertainty heatmap"))
        self.addOutput(QgsProcessingOutputNumber("SCENE", "Scene id"))

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
        feedback.pushInfo(f"scene {added['scene']['id']}: job {added['job']}")
        client.wait_job(added["job"], feedback)
        scene = added["scene"]["id"]
        out = self.parameterAsOutputLayer(parameters, "HEATMAP", context)
        with open(out, "wb") as f:
            f.write(client.get_bytes(f"/projects/{pid}/scenes/{scene}/heatmap"))
        return {"HEATMAP": out, "SCENE": scene}


class SuggestAlgorithm(NextTileAlgorithm):
    """Ranked tiles to label next."""

    def name(self):
        return "suggest"

    def displayName(self):
        return "Suggest tiles to label"

    def shortHelpString(self):
        return "Asks the daemon for the tiles to label next (EPSG:4326 polygons ranked by the strategy; labelled tiles are never suggested). Fill the `class` field and run 'Send labels'."

    def initAlgorithm(self, config=None):
        self.add_select_params()
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", "Suggestions", QgsProcessing.TypeVectorPolygon))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        fc = self.client().post_json(f"/projects/{pid}/suggestions", self.select_body(parameters, context))
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        write_feature_collection(fc, out, context.transformContext())
        return {"OUTPUT": out}


class SendLabelsAlgorithm(NextTileAlgorithm):
    """Posts features with a class to the project."""

    def name(self):
        return "send_labels"

    def displayName(self):
        return "Send labels"

    def shortHelpString(self):
        return "Sends every feature whose class field is filled (points or polygons, any CRS) to the project's labels. Polygons from the suggestions layer are sent as a point inside them, so each labels exactly its tile; untick that to send drawn polygons as drawn."

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", "Project id", QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterFeatureSource("INPUT", "Labelled features", [QgsProcessing.TypeVectorAnyGeometry]))
        self.addParameter(QgsProcessingParameterField("CLASS_FIELD", "Class field", "class", "INPUT"))
        self.addParameter(QgsProcessingParameterBoolean("AS_POINTS", "Send polygons as a point inside them", True))
        self.addOutput(QgsProcessingOutputNumber("SENT", "Labels stored"))
        self.addOutput(QgsProcessingOutputString("IDS", "Label ids (JSON)"))

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
            raise QgsProcessingException(f"no feature has a value in '{field}': fill the class of the tiles you labelled first")
        stored = self.client().post_json(f"/projects/{pid}/labels", {"type": "FeatureCollection", "features": features})
        return {"SENT": len(stored["ids"]), "IDS": json.dumps(stored["ids"])}


class RetrainAlgorithm(NextTileAlgorithm):
    """A retraining round and its new suggestions."""

    def name(self):
        return "retrain"

    def displayName(self):
        return "Retrain and suggest again"

    def shortHelpString(self):
        return "Retrains the project's head on all its labels (from cached embeddings), rescores, and writes the new suggestions (labelled tiles excluded)."

    def initAlgorithm(self, config=None):
        self.add_select_params()
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", "New suggestions", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber("ROUND", "Round"))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        client = self.client()
        started = client.post_json(f"/projects/{pid}/rounds", self.select_body(parameters, context))
        job = client.wait_job(started["job"], feedback)
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        write_feature_collection(job["result"]["suggestions"], out, context.transformContext())
        return {"OUTPUT": out, "ROUND": job["result"]["round"]}


class ExportAlgorithm(NextTileAlgorithm):
    """Survey exports."""

    def name(self):
        return "export"

    def displayName(self):
        return "Export for a field survey (GeoPackage / GPX / CSV)"

    def shortHelpString(self):
        return "Downloads the latest suggestions in a short visit order: a GeoPackage with suggestions and labels layers (QField), GPX waypoints, or a CSV with lon/lat, rank and visit order."

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber("PROJECT", "Project id", QgsProcessingParameterNumber.Integer, minValue=1))
        self.addParameter(QgsProcessingParameterEnum("FORMAT", "Format", EXPORT_FORMATS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", "File", "GeoPackage (*.gpkg);;GPX (*.gpx);;CSV (*.csv)"))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        fmt = EXPORT_FORMATS[self.parameterAsEnum(parameters, "FORMAT", context)]
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not out.lower().endswith("." + fmt):
            out = os.path.splitext(out)[0] + "." + fmt
        with open(out, "wb") as f:
            f.write(self.client().get_bytes(f"/projects/{pid}/export?format={fmt}"))
        return {"OUTPUT": out}


ALGORITHMS = [
    CreateProjectAlgorithm,
    ScoreAlgorithm,
    SuggestAlgorithm,
    SendLabelsAlgorithm,
    RetrainAlgorithm,
    ExportAlgorithm,
]
