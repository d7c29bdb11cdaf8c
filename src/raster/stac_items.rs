//! Many STAC items at once: a STAC ItemCollection (a GeoJSON FeatureCollection whose
//! features are STAC Items, as STAC API `/search` and `/items` answer and `stac-client`
//! saves; <https://github.com/radiantearth/stac-api-spec/blob/main/fragments/itemcollection/README.md>)
//! or a folder of item files. This module lists the items and picks one out of a
//! collection; scoring them one by one is the shells' loop (the CLI's `score`, the
//! daemon's `POST scenes`), each item a scene of its own.
//!
//! Item ids must be unique within a collection (STAC Item spec: "`id` … unique within
//! the collection"): an item is picked out of a collection by its id, and a CLI run
//! writes it to a folder named after it, so items that share an id are refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::RasterError;
use super::stac::{
    MAX_ITEM_BYTES, StacDoc, StacStack, check_item, read_stac_doc, stac_err, stack_stac_item_with,
};

/// Largest ItemCollection file read (an item is a few kilobytes: a hundred thousand).
const MAX_COLLECTION_BYTES: u64 = 256 << 20;

/// Where a list of items came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StacItemsSource {
    /// A STAC ItemCollection file.
    ItemCollection,
    /// A folder of STAC item files (`*.json`, `*.geojson`).
    Folder,
}

/// One item of an ItemCollection or of a folder.
#[derive(Debug, Clone, Serialize)]
pub struct ListedItem {
    /// The item's `id` (a folder item without one: its file name without the extension;
    /// a collection feature without one: `feature N`).
    pub id: String,
    /// The item's own file (a folder), or the collection's file.
    pub file: PathBuf,
    /// Whether the item is picked out of `file` by `id` (an ItemCollection's item).
    pub in_collection: bool,
    /// Why it cannot be scored, found while listing (no id in a collection, an id that
    /// several items share); `None` for an item to score.
    pub problem: Option<String>,
}

/// A JSON file of a folder that is not an item, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedFile {
    /// The file.
    pub file: PathBuf,
    /// What it is instead (`not JSON`, `a STAC Collection, not an Item`, …).
    pub why: String,
}

/// The items of an ItemCollection or a folder, in order (collection order; a folder's
/// files sorted by name).
#[derive(Debug, Clone, Serialize)]
pub struct StacItems {
    /// A collection or a folder.
    pub source: StacItemsSource,
    /// The collection file or the folder.
    pub path: PathBuf,
    /// The items.
    pub items: Vec<ListedItem>,
    /// A folder's JSON files that are not items (ignored).
    pub skipped: Vec<SkippedFile>,
}

/// The items at `path` when it is a STAC ItemCollection file or a folder holding JSON
/// files; `None` for anything else (a single item, a raster, a folder without JSON: the
/// caller scores it as one scene).
///
/// # Errors
///
/// [`RasterError::Stac`] for a collection without items or not readable, and a folder
/// whose JSON files hold no STAC item.
pub fn list_stac_items(path: &Path) -> Result<Option<StacItems>, RasterError> {
    if path.is_dir() {
        return list_folder(path);
    }
    match read_stac_doc(path, MAX_COLLECTION_BYTES)? {
        StacDoc::Collection(doc) => list_collection(path, &doc).map(Some),
        _ => Ok(None),
    }
}

fn list_collection(path: &Path, doc: &Value) -> Result<StacItems, RasterError> {
    let features = doc.get("features").and_then(Value::as_array).ok_or_else(|| {
        stac_err(
            path,
            "this STAC ItemCollection has no features array; give a FeatureCollection whose features are STAC Items",
        )
    })?;
    if features.is_empty() {
        return Err(stac_err(
            path,
            "this STAC ItemCollection holds no items (features is empty); nothing to score",
        ));
    }
    let items = features
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let id = f.get("id").and_then(Value::as_str).map(str::to_string);
            let problem = match &id {
                None => Some(format!(
                    "feature {} of the collection has no id; every STAC item has one: give it an id",
                    n + 1
                )),
                Some(_) => check_item(path, f).err().map(|e| e.to_string()),
            };
            ListedItem {
                id: id.unwrap_or_else(|| format!("feature {}", n + 1)),
                file: path.to_path_buf(),
                in_collection: true,
                problem,
            }
        })
        .collect();
    Ok(StacItems {
        source: StacItemsSource::ItemCollection,
        path: path.to_path_buf(),
        items: refuse_shared_ids(items),
        skipped: Vec::new(),
    })
}

fn list_folder(dir: &Path) -> Result<Option<StacItems>, RasterError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| stac_err(dir, format!("cannot list the folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            matches!(ext.as_deref(), Some("json" | "geojson")) && p.is_file()
        })
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        let why = match read_stac_doc(&file, MAX_ITEM_BYTES) {
            Ok(StacDoc::Item(doc)) => {
                let id = doc
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                items.push(ListedItem {
                    problem: check_item(&file, &doc).err().map(|e| e.to_string()),
                    id,
                    file,
                    in_collection: false,
                });
                continue;
            }
            Ok(StacDoc::Collection(_)) => {
                "a STAC ItemCollection: score it on its own (nexttile score FILE)".to_string()
            }
            Ok(StacDoc::Other(kind)) => format!("a STAC {kind}, not an Item"),
            Ok(StacDoc::NotStac(why)) => why.to_string(),
            Err(e) => e.to_string(),
        };
        skipped.push(SkippedFile { file, why });
    }
    if items.is_empty() {
        let list = skipped
            .iter()
            .take(5)
            .map(|s| {
                let name = s.file.file_name().map(|n| n.to_string_lossy().into_owned());
                format!("{}: {}", name.unwrap_or_default(), s.why)
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(stac_err(
            dir,
            format!(
                "this folder holds {} JSON file(s) and no STAC item ({list}{}); give a folder of STAC Item files (GeoJSON Features with stac_version and assets), an ItemCollection, or a raster",
                skipped.len(),
                if skipped.len() > 5 { "; …" } else { "" }
            ),
        ));
    }
    Ok(Some(StacItems {
        source: StacItemsSource::Folder,
        path: dir.to_path_buf(),
        items: refuse_shared_ids(items),
        skipped,
    }))
}

/// Marks every item whose id another item has too, naming where they are.
fn refuse_shared_ids(mut items: Vec<ListedItem>) -> Vec<ListedItem> {
    let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
    for (n, it) in items.iter().enumerate() {
        by_id.entry(it.id.clone()).or_default().push(n);
    }
    let place = |it: &ListedItem, n: usize| {
        if it.in_collection {
            format!("feature {}", n + 1)
        } else {
            it.file.display().to_string()
        }
    };
    let shared: Vec<(usize, String)> = by_id
        .values()
        .filter(|ns| ns.len() > 1)
        .flat_map(|ns| {
            let places = ns
                .iter()
                .map(|&n| place(&items[n], n))
                .collect::<Vec<_>>()
                .join(", ");
            let id = &items[ns[0]].id;
            let msg = format!(
                "{} items have the id '{id}' ({places}); STAC item ids are unique within a collection, and each item is scored into a folder named after its id: give each item its own id",
                ns.len()
            );
            ns.iter().map(move |&n| (n, msg.clone())).collect::<Vec<_>>()
        })
        .collect();
    for (n, msg) in shared {
        if items[n].problem.is_none() {
            items[n].problem = Some(msg);
        }
    }
    items
}

/// The item with id `id` of the ItemCollection at `collection`, checked as an item.
///
/// # Errors
///
/// [`RasterError::Stac`] when the file is no longer an ItemCollection, holds no item
/// with that id, holds several, or that item is not a STAC Item with assets.
pub fn read_collection_item(collection: &Path, id: &str) -> Result<Value, RasterError> {
    let StacDoc::Collection(mut doc) = read_stac_doc(collection, MAX_COLLECTION_BYTES)? else {
        return Err(stac_err(
            collection,
            format!(
                "item '{id}' was to be read from this file, which is not (or no longer) a STAC ItemCollection; give the collection file, or add the scene again"
            ),
        ));
    };
    let features = match doc.get_mut("features").and_then(Value::as_array_mut) {
        Some(f) => std::mem::take(f),
        None => Vec::new(),
    };
    let total = features.len();
    let mut found: Vec<Value> = features
        .into_iter()
        .filter(|f| f.get("id").and_then(Value::as_str) == Some(id))
        .collect();
    let err = |message: String| RasterError::Stac {
        item: item_label(collection, id),
        message,
    };
    match found.len() {
        0 => Err(err(format!(
            "the collection holds no item with this id (it has {total} items); it may have changed since it was listed"
        ))),
        1 => {
            let item = found.remove(0);
            check_item(collection, &item).map_err(|e| relabel(e, collection, id))?;
            Ok(item)
        }
        n => Err(err(format!(
            "{n} items of the collection have this id; STAC item ids are unique within a collection: give each item its own id"
        ))),
    }
}

/// The item `id` of the ItemCollection at `collection` stacked like an item file
/// ([`stack_stac_item_with`]): relative hrefs are read from the collection's folder, and
/// messages name the item as `collection.json#id`.
///
/// # Errors
///
/// As [`read_collection_item`] and [`stack_stac_item_with`].
pub fn stack_collection_item(
    collection: &Path,
    id: &str,
    confine: Option<&super::Confinement>,
) -> Result<(Value, StacStack), RasterError> {
    let doc = read_collection_item(collection, id)?;
    let stack =
        stack_stac_item_with(collection, &doc, confine).map_err(|e| relabel(e, collection, id))?;
    Ok((doc, stack))
}

/// A STAC error about the collection file, said of its item `id`.
fn relabel(e: RasterError, collection: &Path, id: &str) -> RasterError {
    match e {
        RasterError::Stac { message, .. } => RasterError::Stac {
            item: item_label(collection, id),
            message,
        },
        other => other,
    }
}

/// How an item of a collection is named in messages: `collection.json#id`.
pub fn item_label(collection: &Path, id: &str) -> String {
    format!("{}#{id}", collection.display())
}
