//! Labels → tiles: which scored tiles the analyst's labels touch, and the class each
//! labelled tile carries. Read by the predict stage (retraining) and the select stage
//! (labelled tiles are never suggested; class-balanced selection).

use geo::MultiPolygon;

use crate::aoi::Labelled;
use crate::error::{Error, Result};
use crate::report::ScoreResult;
use crate::tiling::{TileGrid, TileId, tiles_in_aoi};

/// The class of each tile as far as the product knows it, for class-balanced selection:
/// the analyst's label where a labelled tile has one of the head's classes, the head's
/// prediction everywhere else (labels that do not map onto the head's classes leave the
/// prediction in place; retraining reports them).
pub(super) fn known_classes(
    predicted: &[usize],
    labelled: Option<&Labelled>,
    (grid, tiles, scene_wkt): (&TileGrid, &[TileId], &str),
    class_names: &[String],
) -> Vec<usize> {
    let mut ignored = Vec::new();
    let classes = labelled
        .and_then(|l| tile_classes(l, grid, tiles, scene_wkt, class_names, &mut ignored).ok());
    overlay_classes(predicted, classes.as_deref())
}

/// `predicted` with each labelled tile's class in place of the prediction.
pub(super) fn overlay_classes(predicted: &[usize], labels: Option<&[Option<usize>]>) -> Vec<usize> {
    let mut known = predicted.to_vec();
    if let Some(classes) = labels {
        for (k, c) in known.iter_mut().zip(classes) {
            if let Some(c) = c {
                *k = *c;
            }
        }
    }
    known
}

/// A project's labels mapped onto a scored scene's tiles once, for the select stage to
/// reuse while the labels do not change: the daemon keeps it beside a warm scene, by
/// label revision, so `POST suggestions` neither reads nor reprojects every label.
#[derive(Debug, Clone)]
pub struct LabelTiles {
    /// Per scored tile: whether a label touches it (never suggested).
    pub mask: Vec<bool>,
    /// Per scored tile: the class its labels give it, for class-balanced selection
    /// (`None` overall when a label's class is not one of the head's).
    pub classes: Option<Vec<Option<usize>>>,
    /// Labels whose class is not the reserved `unusable` one (what `auto` counts).
    pub usable_labels: usize,
}

/// Maps `labelled` onto the scored tiles of `result`. In: labels and a scored scene.
/// Out: [`LabelTiles`], as the select stage would compute them.
///
/// # Errors
///
/// Reprojecting the labels into the scene's CRS or mapping them onto its grid.
pub fn label_tiles(labelled: &Labelled, result: &ScoreResult) -> Result<LabelTiles> {
    let (grid, tiles, wkt) = (&result.grid, &result.tiles[..], &result.scene.crs_wkt[..]);
    let mut ignored = Vec::new();
    Ok(LabelTiles {
        mask: labelled_tiles(labelled, grid, tiles, wkt)?,
        classes: tile_classes(
            labelled,
            grid,
            tiles,
            wkt,
            &result.class_names,
            &mut ignored,
        )
        .ok(),
        usable_labels: usable_labels(labelled, &result.class_names),
    })
}

/// Labels whose class is not the reserved `unusable` one: they say something about
/// classes (what `auto` counts as labels so far).
pub(super) fn usable_labels(labelled: &Labelled, class_names: &[String]) -> usize {
    let usable = |c: &Option<String>| !is_unusable(c.as_deref(), class_names);
    labelled
        .polygon_classes
        .iter()
        .filter(|c| usable(c))
        .count()
        + labelled.point_classes.iter().filter(|c| usable(c)).count()
}

/// Whether a label's class is the reserved [`UNUSABLE_CLASS`](crate::aoi::UNUSABLE_CLASS)
/// (a tile the analyst could not label): never trained on, but still excluded from
/// suggestions by [`labelled_tiles`]. A head with a class of that name keeps it as a
/// real class.
pub(super) fn is_unusable(class: Option<&str>, class_names: &[String]) -> bool {
    class == Some(crate::aoi::UNUSABLE_CLASS)
        && !class_names.iter().any(|c| c == crate::aoi::UNUSABLE_CLASS)
}

/// The class of every scored tile from the labels' `class` properties: a point labels
/// the tile it falls in, a polygon every tile it touches. A tile touched by labels of
/// different classes takes the class named most often (ties: the first in the head's
/// class order) and a warning says so. Unlabelled tiles, labels without a class and
/// labels of the reserved `unusable` class are `None`.
///
/// # Errors
///
/// [`Error::Invalid`] for a class name the head does not know, listing the valid ones.
pub(super) fn tile_classes(
    labelled: &Labelled,
    grid: &TileGrid,
    tiles: &[TileId],
    scene_wkt: &str,
    class_names: &[String],
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<usize>>> {
    let class_index = |name: &str| {
        class_names.iter().position(|c| c == name).ok_or_else(|| {
            Error::Invalid(format!(
                "label class {name:?} is not one of the head's classes: {}",
                class_names.join(", ")
            ))
        })
    };
    let (polygons, points) = labelled.to_scene_crs(scene_wkt)?;
    let mut votes: std::collections::HashMap<TileId, Vec<usize>> = Default::default();
    for ((x, y), class) in points.iter().zip(&labelled.point_classes) {
        if is_unusable(class.as_deref(), class_names) {
            continue;
        }
        if let (Some(id), Some(c)) = (grid.tile_at(*x, *y), class) {
            votes.entry(id).or_default().push(class_index(c)?);
        }
    }
    for (poly, class) in polygons.0.iter().zip(&labelled.polygon_classes) {
        let Some(c) = class else { continue };
        if is_unusable(Some(c), class_names) {
            continue;
        }
        let c = class_index(c)?;
        match tiles_in_aoi(grid, &MultiPolygon(vec![poly.clone()])) {
            Ok(ids) => ids
                .into_iter()
                .for_each(|id| votes.entry(id).or_default().push(c)),
            Err(crate::tiling::TilingError::AoiOutsideScene { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut conflicts = 0;
    let out = tiles
        .iter()
        .map(|t| {
            let v = votes.get(t)?;
            let mut counts = vec![0usize; class_names.len()];
            v.iter().for_each(|&c| counts[c] += 1);
            let best = (0..counts.len()).max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))?;
            if counts.iter().filter(|&&n| n > 0).count() > 1 {
                conflicts += 1;
            }
            Some(best)
        })
        .collect();
    if conflicts > 0 {
        warnings.push(format!(
            "{conflicts} tile(s) carry labels of more than one class; each was trained on the class named most often"
        ));
    }
    Ok(out)
}

/// Mask over the scored `tiles`: true where a labelled point falls in the
/// tile or a labelled polygon touches it. Labels outside the scene are ignored.
pub(super) fn labelled_tiles(
    labelled: &Labelled,
    grid: &TileGrid,
    tiles: &[TileId],
    scene_wkt: &str,
) -> Result<Vec<bool>> {
    let (polygons, points) = labelled.to_scene_crs(scene_wkt)?;
    let mut set = std::collections::HashSet::new();
    for (x, y) in points {
        if let Some(id) = grid.tile_at(x, y) {
            set.insert(id);
        }
    }
    if !polygons.0.is_empty() {
        match tiles_in_aoi(grid, &polygons) {
            Ok(ids) => set.extend(ids),
            Err(crate::tiling::TilingError::AoiOutsideScene { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(tiles.iter().map(|t| set.contains(t)).collect())
}
