"""`nexttile:retrain`: a retraining round and its new suggestions."""

from qgis.core import QgsProcessing, QgsProcessingOutputNumber, QgsProcessingParameterVectorDestination

from ..layers import write_feature_collection
from ..translation import tr
from .base import NextTileAlgorithm


class RetrainAlgorithm(NextTileAlgorithm):
    """A retraining round and its new suggestions."""

    def name(self):
        return "retrain"

    def displayName(self):
        return tr("Retrain and suggest again")

    def shortHelpString(self):
        return tr(
            "Retrains the project's head on all its labels (from cached embeddings; 'unusable' tiles are "
            "not trained on), rescores, and writes the new suggestions (labelled tiles excluded). With 'All "
            "scenes of the project' the round trains on the labels of every scene, rescores every scored scene "
            "and selects over all of them (each tile names its scene_id); the region heatmap can be written too.")

    def initAlgorithm(self, config=None):
        self.add_select_params()
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", tr("New suggestions"), QgsProcessing.TypeVectorPolygon))
        self.add_region_heatmap_param()
        self.addOutput(QgsProcessingOutputNumber("ROUND", tr("Round")))

    def perform(self, parameters, context, feedback):
        pid = self.parameterAsInt(parameters, "PROJECT", context)
        client = self.client()
        started = client.post_json(f"/projects/{pid}/rounds", self.select_body(parameters, context))
        job = client.wait_job(started["job"], feedback)
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        write_feature_collection(job["result"]["suggestions"], out, context.transformContext())
        results = {"OUTPUT": out, "ROUND": job["result"]["round"]}
        heatmap = self.write_region_heatmap(client, pid, parameters, context)
        if heatmap:
            results["HEATMAP"] = heatmap
        return results
