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
}

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
