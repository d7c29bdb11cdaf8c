//! `nexttile score COLLECTION.json|FOLDER/ -o OUT/`: every item of a STAC
//! ItemCollection or of a folder of item files scored as its own scene, in order
//! (collection order; a folder's files by name), into `OUT/<item id>/`, with
//! `OUT/items.json` saying what became of each item. One item that cannot be scored
//! does not stop the others; the run exits with that item's exit code at the end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ScoreArgs, print_summary, score_one};
use crate::engine::ScoreRequest;
use crate::raster::{ListedItem, StacItems, StacItemsSource};
use crate::{Error, ErrorKind, Result};

/// The index every run over items writes into its output folder.
pub const INDEX_FILE: &str = "items.json";

/// Most characters of an item's folder name.
const MAX_FOLDER_CHARS: usize = 64;

/// What became of one item, as `items.json` lists it.
#[derive(Debug, Clone, Serialize)]
struct ItemEntry {
    /// The item's id.
    id: String,
    /// The file it was read from (its own, or the collection's).
    file: String,
    /// `scored`, `refused` (its error says why) or `not_scored` (the run stopped first).
    status: &'static str,
    /// Its output folder, relative to the output folder (`null` unless scored).
    folder: Option<String>,
    /// Why it was not scored: what is wrong and how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The exit code its error alone would give.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    /// Tiles scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    scored_tiles: Option<usize>,
    /// The sensor preset used and why (`STAC properties: platform …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor: Option<crate::engine::SensorUse>,
    /// The scaling's source (`sensor_preset:s2-l2a`, `model`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    scaling: Option<String>,
    /// Warnings of its run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// `items.json`.
#[derive(Debug, Serialize)]
struct Index<'a> {
    /// `item_collection` or `folder`.
    source: StacItemsSource,
    /// The collection file or folder.
    path: String,
    /// Items scored.
    scored: usize,
    /// Items not scored.
    not_scored: usize,
    /// Every item, in the order scored.
    items: &'a [ItemEntry],
    /// A folder's JSON files that are not items.
    skipped: Vec<(String, String)>,
}

/// A folder name for an item id: letters, digits, `-`, `_` and `.` kept (characters,
/// never bytes), anything else `_`, no leading dot, at most [`MAX_FOLDER_CHARS`]
/// characters; `item-N` when nothing is left.
pub fn folder_name(id: &str, position: usize) -> String {
    let kept: String = id
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .skip_while(|c| *c == '.')
        .take(MAX_FOLDER_CHARS)
        .collect();
    if kept.chars().all(|c| c == '_') {
        format!("item-{position}")
    } else {
        kept
    }
}

/// Folder names for `items`, in order: [`folder_name`], with `-2`, `-3`, … added when
/// two ids make the same name (compared case-insensitively, and never `items.json`).
fn folder_names(items: &[ListedItem]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::from([INDEX_FILE.to_string()]);
    items
        .iter()
        .enumerate()
        .map(|(n, it)| {
            let base = folder_name(&it.id, n + 1);
            let mut name = base.clone();
            let mut k = 2;
            while !taken.insert(name.to_lowercase()) {
                name = format!("{base}-{k}");
                k += 1;
            }
            name
        })
        .collect()
}

/// Whether an error is the machine's or the run's rather than the item's: the loop
/// stops (onnxruntime missing, outputs that cannot be written, a cancelled run).
fn stops_the_run(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::RuntimeMissing
            | ErrorKind::CannotWrite
            | ErrorKind::Unavailable
            | ErrorKind::Cancelled
    )
}

/// Scores every item of `items` with the flags of `a` (`base` is their request),
/// writing each into its folder under `--out` and the index after each item.
///
/// # Errors
///
/// [`Error::Items`] when any item was not scored (after the others were), with the
/// first failure's kind; errors of the output folder itself.
pub(super) fn score_items(a: &ScoreArgs, base: ScoreRequest, items: &StacItems) -> Result<()> {
    if a.save_head.is_some() {
        return Err(Error::Invalid(format!(
            "--save-head names one file, but {} holds {} STAC items, each scored (and retrained) on its own; score one item at a time to save its head",
            items.path.display(),
            items.items.len()
        )));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io {
        path: a.out.display().to_string(),
        source: e,
    })?;
    let index_path = a.out.join(INDEX_FILE);
    for s in &items.skipped {
        eprintln!(
            "note: {} is not a STAC item ({}); ignored",
            s.file.display(),
            s.why
        );
    }
    let names = folder_names(&items.items);
    let total = items.items.len();
    let mut entries: Vec<ItemEntry> = Vec::with_capacity(total);
    let mut first_failure: Option<(String, ErrorKind)> = None;
    for (n, (item, name)) in items.items.iter().zip(&names).enumerate() {
        let mut entry = ItemEntry {
            id: item.id.clone(),
            file: item.file.display().to_string(),
            status: "not_scored",
            folder: None,
            error: None,
            exit_code: None,
            scored_tiles: None,
            sensor: None,
            scaling: None,
            warnings: Vec::new(),
        };
        if let Some((why, _)) = first_failure.as_ref().filter(|(_, k)| stops_the_run(*k)) {
            entry.error = Some(format!(
                "not scored: the run stopped at an earlier item ({why})"
            ));
            entries.push(entry);
            continue;
        }
        if !a.quiet {
            eprintln!(
                "item {}/{total} '{}' → {}",
                n + 1,
                item.id,
                a.out.join(name).display()
            );
        }
        match score_item(a, &base, item, &a.out.join(name)) {
            Ok((result, paths)) => {
                entry.status = "scored";
                entry.folder = Some(name.clone());
                entry.scored_tiles = Some(result.tiles.len());
                entry.sensor = result.input.sensor.clone();
                entry.scaling = Some(result.input.scaling.source.clone());
                entry.warnings = result.warnings.clone();
                if !a.json {
                    print_summary(&result, &paths);
                }
            }
            Err(e) => {
                eprintln!("error: item '{}' was not scored: {e}", item.id);
                entry.status = "refused";
                entry.error = Some(e.to_string());
                entry.exit_code = Some(e.exit_code());
                first_failure.get_or_insert((format!("item '{}': {e}", item.id), e.kind()));
            }
        }
        entries.push(entry);
        write_index(&index_path, items, &entries)?;
    }
    write_index(&index_path, items, &entries)?;
    let scored = entries.iter().filter(|e| e.status == "scored").count();
    if a.json {
        let index = index_value(items, &entries);
        println!(
            "{}",
            serde_json::to_string_pretty(&index).unwrap_or_default()
        );
    } else {
        println!(
            "scored {scored} of {total} STAC items of {}; index: {}",
            items.path.display(),
            index_path.display()
        );
    }
    match first_failure {
        None => Ok(()),
        Some((first, kind)) => Err(Error::Items {
            failed: total - scored,
            total,
            first,
            index: index_path.display().to_string(),
            kind,
        }),
    }
}

/// One item: refused when listing found it unusable, else scored with the base request
/// pointed at its file (and, in a collection, its id).
fn score_item(
    a: &ScoreArgs,
    base: &ScoreRequest,
    item: &ListedItem,
    out: &Path,
) -> Result<(crate::engine::ScoreResult, crate::engine::OutputPaths)> {
    if let Some(problem) = &item.problem {
        return Err(Error::Invalid(problem.clone()));
    }
    let mut req = base.clone();
    req.scene = PathBuf::from(&item.file);
    req.stac_item = item.in_collection.then(|| item.id.clone());
    score_one(a, &req, out)
}

fn index_value(items: &StacItems, entries: &[ItemEntry]) -> serde_json::Value {
    let scored = entries.iter().filter(|e| e.status == "scored").count();
    let index = Index {
        source: items.source,
        path: items.path.display().to_string(),
        scored,
        not_scored: items.items.len() - scored,
        items: entries,
        skipped: items
            .skipped
            .iter()
            .map(|s| (s.file.display().to_string(), s.why.clone()))
            .collect(),
    };
    serde_json::to_value(index).unwrap_or(serde_json::Value::Null)
}

/// Writes `items.json` (after every item, so an interrupted run leaves what it did).
fn write_index(path: &Path, items: &StacItems, entries: &[ItemEntry]) -> Result<()> {
    let text = serde_json::to_string_pretty(&index_value(items, entries)).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_safe_and_distinct() {
        assert_eq!(
            folder_name("S2B_33UXP_20250302_0_L2A", 1),
            "S2B_33UXP_20250302_0_L2A"
        );
        assert_eq!(folder_name("../etc/passwd", 1), "_etc_passwd");
        assert_eq!(folder_name("..", 3), "item-3");
        assert_eq!(folder_name("", 2), "item-2");
        assert_eq!(folder_name("/", 4), "item-4");
        // Characters, never bytes: a long non-ASCII id is cut on a character.
        let long = "é".repeat(100);
        assert_eq!(folder_name(&long, 1), "é".repeat(MAX_FOLDER_CHARS));
        let item = |id: &str| ListedItem {
            id: id.into(),
            file: PathBuf::from("c.json"),
            in_collection: true,
            problem: None,
        };
        let names = folder_names(&[item("a/b"), item("a_b"), item("A_B"), item("items.json")]);
        assert_eq!(names, ["a_b", "a_b-2", "A_B-3", "items.json-2"]);
    }
}
