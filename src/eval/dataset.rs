//! Image-folder datasets: one sub-folder per class (EuroSAT-RGB's layout), with an
//! optional `splits.csv` (`path,class,split`) fixing the train / val / test split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gdal::Dataset as GdalDataset;
use ndarray::{Array3, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::EvalError;

/// Image file extensions read from class folders (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "tif", "tiff", "jp2"];

/// Share of each class put into the test split when the folder has no `splits.csv`.
pub const DEFAULT_TEST_FRACTION: f64 = 0.2;

/// Which split an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The pool the active-learning loop labels from.
    Train,
    /// Held out, unused by the evaluation.
    Val,
    /// Held out; every reported score is measured here.
    Test,
}

impl Split {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

/// One labelled image of an [`ImageFolder`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// Path relative to the dataset root.
    pub path: PathBuf,
    /// Class index into [`ImageFolder::classes`].
    pub class: usize,
    /// Its split.
    pub split: Split,
}

/// A labelled image dataset laid out as `root/<class>/<image>`.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class names (sorted; the folder names).
    pub classes: Vec<String>,
    /// Every image, in `splits.csv` order or sorted by path.
    pub items: Vec<ImageItem>,
    /// Where the split came from: `"splits.csv"` or a description of the seeded split.
    pub split_source: String,
}

impl ImageFolder {
    /// Opens `root`. With `root/splits.csv` (`path,class,split`, paths relative to
    /// `root`) that file decides the images and their splits; without it every image in
    /// a class sub-folder is used and [`DEFAULT_TEST_FRACTION`] of each class goes to the
    /// test split, chosen with ChaCha8 seeded by `seed`.
    ///
    /// # Errors
    ///
    /// [`EvalError::Dataset`] when the folder, a listed image or a class is missing,
    /// a CSV line is malformed, or there are fewer than two classes.
    pub fn open(root: &Path, seed: u64) -> Result<Self, EvalError> {
        let bad = |m: String| EvalError::Dataset {
            path: root.to_path_buf(),
            message: m,
        };
        if !root.is_dir() {
            return Err(bad("not a folder; pass the folder that holds one sub-folder per class (e.g. the extracted eurosat-rgb/)".into()));
        }
        let csv = root.join("splits.csv");
        let folder = if csv.is_file() {
            Self::from_csv(root, &csv)?
        } else {
            Self::from_folders(root, seed)?
        };
        if folder.classes.len() < 2 {
            return Err(bad(format!(
                "found {} class(es); an evaluation needs at least two class sub-folders",
                folder.classes.len()
            )));
        }
        Ok(folder)
    }

    fn from_csv(root: &Path, csv: &Path) -> Result<Self, EvalError> {
        let bad = |m: String| EvalError::Dataset {
            path: csv.to_path_buf(),
            message: m,
        };
        let text = std::fs::read_to_string(csv).map_err(|e| bad(format!("cannot read: {e}")))?;
        let mut rows = Vec::new();
        let mut class_names = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (n == 0 && line.starts_with("path")) {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [path, class, split] = fields[..] else {
                return Err(bad(format!(
                    "line {}: expected `path,class,split`, found {line:?}",
                    n + 1
                )));
            };
            let split = Split::parse(split).ok_or_else(|| {
                bad(format!(
                    "line {}: split {split:?} is not train, val or test",
                    n + 1
                ))
            })?;
            if Path::new(path).is_absolute() || path.split('/').any(|p| p == "..") {
                return Err(bad(format!(
                    "line {}: path {path:?} must be relative to the dataset folder",
                    n + 1
                )));
            }
            class_names.insert(class.to_string(), ());
            rows.push((PathBuf::from(path), class.to_string(), split));
        }
        let classes: Vec<String> = class_names.into_keys().collect();
        let items = rows
            .into_iter()
            .map(|(path, class, split)| ImageItem {
                class: classes.iter().position(|c| *c == class).unwrap_or(0),
                path,
                split,
            })
            .collect::<Vec<_>>();
        if let Some(missing) = items.iter().find(|i| !root.join(&i.path).is_file()) {
            return Err(bad(format!(
                "lists {} but that file does not exist under {}",
                missing.path.display(),
                root.display()
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            items,
            split_source: "splits.csv".into(),
        })
    }

    fn from_folders(root: &Path, seed: u64) -> Result<Self, EvalError> {
        let io = |p: &Path, e: std::io::Error| EvalError::Dataset {
            path: p.to_path_buf(),
            message: format!("cannot list: {e}"),
        };
        let mut classes = Vec::new();
        for entry in std::fs::read_dir(root).map_err(|e| io(root, e))? {
            let entry = entry.map_err(|e| io(root, e))?;
            if entry.path().is_dir() {
                classes.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        classes.sort();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut items = Vec::new();
        for (class, name) in classes.iter().enumerate() {
            let dir = root.join(name);
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
                let p = entry.map_err(|e| io(&dir, e))?.path();
                let ext = p
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                if p.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                    files.push(PathBuf::from(name).join(p.file_name().unwrap_or_default()));
                }
            }
            files.sort();
            let mut order: Vec<usize> = (0..files.len()).collect();
            order.shuffle(&mut rng);
            let n_test = (files.len() as f64 * DEFAULT_TEST_FRACTION).round() as usize;
            let mut is_test = vec![false; files.len()];
            for &i in &order[..n_test] {
                is_test[i] = true;
            }
            for (path, test) in files.into_iter().zip(is_test) {
                items.push(ImageItem {
                    path,
                    class,
                    split: if test { Split::Test } else { Split::Train },
                });
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            items,
            split_source: format!(
                "no splits.csv: {:.0} % of each class to test, ChaCha8 seed {seed}",
                DEFAULT_TEST_FRACTION * 100.0
            ),
        })
    }

    /// Indices into [`items`](Self::items) of one split.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| self.items[i].split == split)
            .collect()
    }

    /// Carves a validation fold out of the `train` split: `(pool, fold)` indices into
    /// [`items`](Self::items). Within each class, the train images are ordered by the
    /// lowercase hex SHA-256 of `"nexttile-validation-fold:" + path` (the path as written
    /// in `splits.csv`, `/`-separated) and the first `round(n × fraction)` form the fold.
    /// The rule is stratified, needs no seed, and is reproducible outside NextTile (the
    /// encoder scripts in `onnx/` carve the same fold). Neither half touches `val`.
    ///
    /// # Errors
    ///
    /// [`EvalError::Config`] when `fraction` is not in (0, 1), or a class would have an
    /// empty pool or fold.
    pub fn validation_fold(&self, fraction: f64) -> Result<(Vec<usize>, Vec<usize>), EvalError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(EvalError::Config(format!(
                "validation fold fraction {fraction} must be between 0 and 1 (e.g. 0.2)"
            )));
        }
        let mut by_class: Vec<Vec<(String, usize)>> = vec![Vec::new(); self.classes.len()];
        for i in self.indices(Split::Train) {
            let item = &self.items[i];
            let path = item.path.to_string_lossy().replace('\\', "/");
            let key = format!(
                "{:x}",
                <sha2::Sha256 as sha2::Digest>::digest(format!("{VALIDATION_FOLD_SALT}{path}"))
            );
            by_class[item.class].push((key, i));
        }
        let (mut pool, mut fold) = (Vec::new(), Vec::new());
        for (class, mut members) in by_class.into_iter().enumerate() {
            members.sort();
            let n_fold = (members.len() as f64 * fraction + 0.5).floor() as usize;
            if !members.is_empty() && (n_fold == 0 || n_fold == members.len()) {
                return Err(EvalError::Config(format!(
                    "class {} has {} train image(s): too few for a validation fold of {:.0} %",
                    self.classes[class],
                    members.len(),
                    fraction * 100.0
                )));
            }
            fold.extend(members[..n_fold].iter().map(|m| m.1));
            pool.extend(members[n_fold..].iter().map(|m| m.1));
        }
        pool.sort_unstable();
        fold.sort_unstable();
        Ok((pool, fold))
    }
}

/// Salt of the validation-fold hash (see [`ImageFolder::validation_fold`]).
pub const VALIDATION_FOLD_SALT: &str = "nexttile-validation-fold:";

/// Reads the first `bands` bands of an image through GDAL as `[bands, H, W]` `f32` raw
/// values, and whether the file is 8-bit.
///
/// # Errors
///
/// [`EvalError::Image`] when GDAL cannot open or read it, or it has fewer bands.
pub fn read_image(path: &Path, bands: usize) -> Result<(Array3<f32>, bool), EvalError> {
    let bad = |m: String| EvalError::Image {
        path: path.to_path_buf(),
        message: m,
    };
    let ds = GdalDataset::open(path).map_err(|e| bad(format!("GDAL cannot open it: {e}")))?;
    let (w, h) = ds.raster_size();
    let count = ds.raster_count();
    if count < bands {
        return Err(bad(format!(
            "has {count} band(s); the encoder takes {bands}"
        )));
    }
    let mut out = Array3::<f32>::zeros((bands, h, w));
    let mut byte = true;
    for b in 0..bands {
        let rb = ds
            .rasterband(b + 1)
            .map_err(|e| bad(format!("band {}: {e}", b + 1)))?;
        byte &= rb.band_type() == gdal::raster::GdalDataType::UInt8;
        let mut plane = vec![0f32; w * h];
        rb.read_into_slice::<f32>((0, 0), (w, h), (w, h), &mut plane, None)
            .map_err(|e| bad(format!("band {}: {e}", b + 1)))?;
        out.slice_mut(s![b, .., ..])
            .iter_mut()
            .zip(plane)
            .for_each(|(o, v)| *o = v);
    }
    Ok((out, byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A_1..A_10 (A_4 in `val`) and B_1..B_11 (B_11 in `test`), the rest `train`.
    fn folder() -> ImageFolder {
        let mut items = Vec::new();
        for (class, name, n) in [(0, "A", 10), (1, "B", 11)] {
            for k in 1..=n {
                let split = match (name, k) {
                    ("A", 4) => Split::Val,
                    ("B", 11) => Split::Test,
                    _ => Split::Train,
                };
                items.push(ImageItem {
                    path: PathBuf::from(format!("{name}/{name}_{k}.jpg")),
                    class,
                    split,
                });
            }
        }
        ImageFolder {
            root: PathBuf::from("/nonexistent"),
            classes: vec!["A".into(), "B".into()],
            items,
            split_source: "test".into(),
        }
    }

    #[test]
    fn validation_fold_is_the_hash_order_per_class_and_never_val() {
        // sha256("nexttile-validation-fold:A/A_<k>.jpg") orders A's train images
        // 10, 8, 1, ... and B's 4, 1, 10, ... (checked with Python's hashlib); 20 % of
        // 9 and 10 images round to 2 each.
        let (pool, fold) = folder().validation_fold(0.2).unwrap();
        assert_eq!(fold, vec![7, 9, 10, 13]); // A_8, A_10, B_1, B_4
        assert_eq!(
            pool,
            vec![0, 1, 2, 4, 5, 6, 8, 11, 12, 14, 15, 16, 17, 18, 19]
        );
        assert!(!pool.contains(&3) && !fold.contains(&3), "A_4 is val");
        assert!(!pool.contains(&20) && !fold.contains(&20), "B_11 is test");
        let err = folder().validation_fold(1.0).unwrap_err().to_string();
        assert!(err.contains("between 0 and 1"), "{err}");
        let err = folder().validation_fold(0.01).unwrap_err().to_string();
        assert!(err.contains("too few"), "{err}");
    }
}
