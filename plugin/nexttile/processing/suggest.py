"""`nexttile:suggest`: ranked tiles to label next."""

from qgis.core import QgsProcessing, QgsProcessingParameterVectorDestination

from ..layers import write_feature_collection
from ..translation import tr
from .base import NextTileAlgorithm


class SuggestAlgorithm(NextTileAlgorithm):
    """Ranked tiles to label next."""

    def name(self):
        return "suggest"

    def displayName(self):
        return tr("Suggest tiles to label")

    def shortHelpString(self):
        return tr(
            "Asks the daemon for the tiles to label next (EPSG:4326 polygons ranked by the strategy; labelled "
            "tiles are never suggested). Review them in the NextTile review panel, or fill the `class` field "
            "and run 'Send labels'. With 'All scenes of the project' one selection spans every scored scene of "
            "the project: each tile names its scene (scene_id, scene_path), ranks are global, and the region "
            "heatmap (every scene in one GeoTIFF) can be written too.")

    def initAlgorithm(self, config=None):
        self.add_select_params()
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", tr("Suggestions"), QgsProcessing.TypeVectorPolygon))
        self.add_region_heatmap_param()

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        client = self.client()
        fc = client.post_json(f"/projects/{pid}/suggestions", self.select_body(parameters, context))
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        write_feature_collection(fc, out, context.transformContext())
        results = {"OUTPUT": out}
        heatmap = self.write_region_heatmap(client, pid, parameters, context)
        if heatmap:
            results["HEATMAP"] = heatmap
        return results
