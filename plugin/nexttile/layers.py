"""Turning daemon results into styled QGIS layers and files."""

import json
import os
import tempfile

from qgis.core import (
    QgsClassificationEqualInterval,
    QgsColorRampShader,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsEditorWidgetSetup,
    QgsGeometry,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsPalettedRasterRenderer,
    QgsPalLayerSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)

from .translation import tr


def write_feature_collection(fc, path, transform_context):
    """Writes a GeoJSON FeatureCollection (EPSG:4326) to `path` in the format its
    extension names (GeoPackage, GeoJSON, Shapefile, ...)."""
    # Nested properties (probabilities, uncertainty, strategy parameters) become JSON
    # text, so every format can hold them; `class` stays a text field for the analyst.
    flat = {"type": "FeatureCollection", "features": []}
    for f in fc.get("features", []):
        props = {
            k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
            for k, v in (f.get("properties") or {}).items()
        }
        if props.get("class") is None:
            props["class"] = ""
        flat["features"].append({"type": "Feature", "geometry": f.get("geometry"), "properties": props})
    fc = flat
    tmp = tempfile.NamedTemporaryFile(suffix=".geojson", delete=False, mode="w", encoding="utf-8")
    with tmp:
        json.dump(fc, tmp)
    if path.lower().endswith((".geojson", ".json")):
        os.replace(tmp.name, path)
        return path
    layer = QgsVectorLayer(tmp.name, "suggestions", "ogr")
    options = QgsVectorFileWriter.SaveVectorOptions()
    ext = os.path.splitext(path)[1].lstrip(".")
    options.driverName = QgsVectorFileWriter.driverForExtension(ext) or "GPKG"
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, path, transform_context, options)
    del layer
    os.unlink(tmp.name)
    if result[0] != QgsVectorFileWriter.NoError:
        raise OSError(tr("cannot write {path}: {error}").format(path=path, error=result[1]))
    return path


def style_suggestions(layer, classes):
    """Graduated by rank (rank 1 darkest) and an editable `class` field whose editor
    is a value map of the project's classes."""
    ramp = QgsStyle.defaultStyle().colorRamp("Reds") or QgsGradientColorRamp()
    ramp.invert()
    renderer = QgsGraduatedSymbolRenderer("rank")
    renderer.setClassificationMethod(QgsClassificationEqualInterval())
    renderer.updateClasses(layer, 5)
    renderer.updateColorRamp(ramp)
    for i, r in enumerate(renderer.ranges()):
        sym = r.symbol().clone()
        sym.setOpacity(0.7)
        renderer.updateRangeSymbol(i, sym)
    layer.setRenderer(renderer)
    idx = layer.fields().indexOf("class")
    if idx >= 0:
        value_map = {"map": [{c: c} for c in classes]}
        layer.setEditorWidgetSetup(idx, QgsEditorWidgetSetup("ValueMap", value_map))
    if layer.fields().indexOf("scene_id") >= 0:
        name_scenes(layer)
    layer.triggerRepaint()


def _quoted(text):
    """`text` as a QGIS expression string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def name_scenes(layer):
    """Picks over several scenes (`"scope": "project"`): each tile labelled with its
    rank and its scene (id and file name), the map tip naming the scene's file."""
    settings = QgsPalLayerSettings()
    settings.isExpression = True
    settings.fieldName = "{rank} || ' · ' || {scene} || ' ' || \"scene_id\" || ' (' || base_file_name(\"scene_path\") || ')'".format(
        rank="'#' || \"rank\"", scene=_quoted(tr("scene")))
    settings.placement = QgsPalLayerSettings.OverPoint
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)
    layer.setMapTipTemplate(
        tr("Rank {rank} · scene {scene}: {path}").format(
            rank='[% "rank" %]', scene='[% "scene_id" %]', path='[% "scene_path" %]'))
    layer.setDisplayExpression("{scene} || ' ' || \"scene_id\" || ' · ' || \"tile_id\"".format(scene=_quoted(tr("scene"))))


#: The layer name of the region heatmap (every scene of a project), beside the per-scene
#: "NextTile uncertainty".
REGION_HEATMAP_LAYER = "NextTile uncertainty (all scenes)"


def heatmap_layer(path, name="NextTile uncertainty"):
    """The heatmap COG with a viridis pseudocolour on its first band (uncertainty)."""
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        return layer
    stats = layer.dataProvider().bandStatistics(1)
    ramp = QgsStyle.defaultStyle().colorRamp("Viridis") or QgsGradientColorRamp()
    fn = QgsColorRampShader(stats.minimumValue, stats.maximumValue, ramp)
    fn.classifyColorRamp(8, 1, layer.extent(), layer.dataProvider())
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fn)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader))
    return layer


def wgs84():
    """EPSG:4326."""
    return QgsCoordinateReferenceSystem("EPSG:4326")


#: Band of the heatmap COG holding the predicted class index (after the five metrics).
CLASS_BAND = 6


def class_layer(path, classes, name="NextTile predicted class"):
    """The heatmap's predicted-class band with a categorical (paletted) style named by
    the project's classes."""
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        return layer
    ramp = QgsStyle.defaultStyle().colorRamp("Spectral") or QgsGradientColorRamp()
    entries = []
    n = max(len(classes), 1)
    for i, c in enumerate(classes):
        color = ramp.color(i / max(n - 1, 1))
        entries.append(QgsPalettedRasterRenderer.Class(i, color, c))
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), CLASS_BAND, entries))
    return layer


def labels_layer(fc, name="NextTile labels"):
    """The project's labels (GeoJSON from the daemon) as a layer of their own."""
    tmp = tempfile.NamedTemporaryFile(suffix=".geojson", delete=False, mode="w", encoding="utf-8")
    with tmp:
        json.dump(fc, tmp)
    return QgsVectorLayer(tmp.name, name, "ogr")


def aoi_feature_collection(geometries, crs, transform_context=None):
    """Polygons (QgsGeometry) in `crs` as a GeoJSON FeatureCollection in EPSG:4326, the
    AOI the daemon takes."""
    ctx = transform_context or QgsProject.instance().transformContext()
    to_wgs84 = QgsCoordinateTransform(crs, wgs84(), ctx)
    features = []
    for g in geometries:
        g = QgsGeometry(g)
        if g.isEmpty() or g.type() != 2:
            continue
        g.transform(to_wgs84)
        features.append({"type": "Feature", "properties": {}, "geometry": json.loads(g.asJson(7))})
    return {"type": "FeatureCollection", "features": features}
