"""The shared base of the `nexttile` Processing algorithms: the daemon client, error
translation, the selection parameters and the AOI. Each algorithm is one daemon call
(plus job polling), so they work in the toolbox, the graphical modeler and qgis_process."""

import os

from qgis.core import (
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..client import DaemonClient, DaemonError
from ..layers import aoi_feature_collection
from ..settings import daemon_defaults, daemon_lists
from ..translation import tr

EXPORT_FORMATS = ["gpkg", "gpx", "csv"]



def strategy_choices():
    """The strategies the daemon offers (its /health list, as last seen), default first."""
    strategies, _, default = daemon_lists()
    return [default] + [s for s in strategies if s != default] if default in strategies else strategies


def metric_choices():
    """"default" (the daemon chooses) and every metric the daemon offers."""
    return ["default"] + daemon_lists()[1]


def local_raster_path(layer):
    """The file behind a raster layer, or a clear error for layers the daemon cannot
    read (memory, WMS/WCS, XYZ, virtual files)."""
    if layer is None or not layer.isValid():
        raise QgsProcessingException(tr(
            "the raster layer is not valid (a web service that does not answer, or a moved "
            "file?). Save it as a GeoTIFF in a folder the daemon serves (nexttile serve --root ...) "
            "and use that layer."
        ))
    if layer.providerType() != "gdal":
        raise QgsProcessingException(tr(
            "the daemon reads raster files only, and '{name}' comes from the '{provider}' provider "
            "(e.g. a web service). Save it as a GeoTIFF in a folder the daemon serves "
            "(nexttile serve --root ...) and use that layer."
        ).format(name=layer.name(), provider=layer.providerType()))
    path = layer.source().split("|")[0]
    if path.startswith("/vsi") or not os.path.isfile(path):
        raise QgsProcessingException(tr(
            "'{name}' is not a local file ({path}). Save it as a GeoTIFF in a folder "
            "the daemon serves (nexttile serve --root ...) and use that layer."
        ).format(name=layer.name(), path=path))
    return path


class NextTileAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: the client, error translation, group, selection parameters."""

    def tr(self, text):
        """QGIS's convention for algorithms; the algorithms call the module's tr() (the
        context pylupdate5 extracts)."""
        return tr(text)

    def group(self):
        return tr("Active learning")

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

    def perform(self, parameters, context, feedback):
        raise NotImplementedError

    def select_body(self, parameters, context):
        """The body of a suggestions or rounds request."""
        name = (self.parameterAsString(parameters, "STRATEGY_NAME", context) or "").strip()
        strategies = getattr(self, "_strategies", None) or strategy_choices()
        metrics = getattr(self, "_metrics", None) or metric_choices()
        metric = metrics[self.parameterAsEnum(parameters, "METRIC", context)]
        body = {
            "strategy": name or strategies[self.parameterAsEnum(parameters, "STRATEGY", context)],
            "budget": self.parameterAsInt(parameters, "BUDGET", context),
            "mc_passes": self.parameterAsInt(parameters, "MC_PASSES", context),
            "min_spacing_m": self.parameterAsDouble(parameters, "MIN_SPACING", context),
        }
        if metric != "default":
            body["metric"] = metric
        scene = self.parameterAsInt(parameters, "SCENE", context)
        if self.all_scenes(parameters, context):
            if scene > 0:
                raise QgsProcessingException(tr(
                    "'All scenes of the project' selects over every scene of the project: "
                    "leave the scene id at 0"))
            body["scope"] = "project"
        elif scene > 0:
            body["scene_id"] = scene
        aoi = self.aoi(parameters, context)
        if aoi is not None:
            body["aoi"] = aoi
        return body

    def all_scenes(self, parameters, context):
        """Whether ALL_SCENES asks for one selection over every scored scene of the
        project (the daemon's `"scope": "project"`)."""
        return bool(parameters.get("ALL_SCENES")) and self.parameterAsBoolean(parameters, "ALL_SCENES", context)

    def write_region_heatmap(self, client, pid, parameters, context):
        """With ALL_SCENES and a HEATMAP destination: the region heatmap (GET
        /projects/{id}/heatmap, every scored scene in one GeoTIFF) written there; its
        path, or None."""
        if not self.all_scenes(parameters, context) or not parameters.get("HEATMAP"):
            return None
        out = self.parameterAsOutputLayer(parameters, "HEATMAP", context)
        if not out:
            return None
        with open(out, "wb") as f:
            f.write(client.get_bytes(f"/projects/{int(pid)}/heatmap"))
        return out

    def add_region_heatmap_param(self):
        self.addParameter(QgsProcessingParameterRasterDestination(
            "HEATMAP", tr("Region heatmap (with 'All scenes of the project': every scene in one GeoTIFF)"),
            optional=True, createByDefault=False))

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
            raise QgsProcessingException(tr("the AOI layer has no polygon: draw the area as a polygon"))
        return fc

    def add_aoi_params(self):
        self.addParameter(QgsProcessingParameterFeatureSource(
            "AOI_LAYER", tr("Limit to these polygons (selected features only when 'Selected features only' is ticked)"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", tr("Limit to this extent (e.g. the map canvas)"), optional=True))

    def add_select_params(self):
        # The lists the daemon reported at its last /health (Connect refreshes them).
        self._strategies = strategy_choices()
        self._metrics = metric_choices()
        integer, double = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
        self.addParameter(QgsProcessingParameterNumber("PROJECT", tr("Project id"), integer, minValue=1))
        self.addParameter(QgsProcessingParameterNumber("SCENE", tr("Scene id (0 = the project's latest)"), integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            "ALL_SCENES", tr("All scenes of the project (one selection over every scored scene)"), defaultValue=False, optional=True))
        self.addParameter(QgsProcessingParameterEnum("STRATEGY", tr("Strategy"), self._strategies, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            "STRATEGY_NAME", tr("Strategy by name (overrides the list; any the daemon offers)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum("METRIC", tr("Uncertainty metric"), self._metrics, defaultValue=0))
        # The defaults and limits the daemon reported (the CLI's and the daemon's own).
        d = daemon_defaults()
        self.addParameter(QgsProcessingParameterNumber(
            "BUDGET", tr("Tiles to suggest"), integer, d["budget"], minValue=1, maxValue=d["max_budget"]))
        self.addParameter(QgsProcessingParameterNumber(
            "MC_PASSES", tr("MC-dropout passes"), integer, d["mc_passes"], minValue=1, maxValue=d["max_mc_passes"]))
        self.addParameter(QgsProcessingParameterNumber(
            "MIN_SPACING", tr("Minimum ground spacing (m)"), double, d["min_spacing_m"], minValue=0.0))
        self.add_aoi_params()
