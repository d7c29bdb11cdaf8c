//! Which files a raster may make GDAL read, for the daemon: every file a dataset
//! opens (the raster itself, its sidecars, and for a VRT every source, recursively)
//! must lie under the configured raster roots, and nothing may reach the network.
//!
//! A VRT (recognised by content, whatever its name) is checked **before** GDAL opens
//! it: its XML is parsed with GDAL's own parser (`CPLParseXMLString`, so what is
//! checked is exactly what the VRT driver will read), every `SourceFilename` /
//! `SourceDataset` is resolved as the driver resolves it, and each must be a plain
//! path (no `/vsi…`, no `DRIVER:` connection string, no `..`) whose canonical form is
//! under a root; nested VRTs are walked the same way (depth-capped, cycles refused).
//! Any other file is opened with the drivers that cannot reach the network or name
//! arbitrary files, and GDAL's file list of the opened dataset is checked too.

use std::collections::HashSet;
use std::ffi::{CStr, CString, c_char};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use gdal::{Dataset, DatasetOptions, DriverManager, GdalOpenFlags};

/// The raster roots and whether GDAL virtual file systems are allowed (the daemon's
/// `--root` and `allow_vsi`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Canonical folders the rasters and all their sources must lie in.
    pub roots: Vec<PathBuf>,
    /// When true, `/vsi…` paths (and so network access) are allowed.
    pub allow_vsi: bool,
}

/// How deep VRTs may nest (a VRT whose source is a VRT is depth 2).
pub const MAX_VRT_DEPTH: usize = 8;

/// The largest VRT file that is read for checking (GDAL reads it whole too).
pub const MAX_VRT_BYTES: u64 = 32 << 20;

/// GDAL drivers the daemon never opens: they fetch URLs or read files named inside
/// the data without the checks a VRT gets.
pub const DENIED_DRIVERS: &[&str] = &[
    "WMS",
    "WMTS",
    "WCS",
    "PLMosaic",
    "MRF",
    "GTI",
    "STACTA",
    "STACIT",
    "ESRIC",
    "DAAS",
    "EEDA",
    "EEDAI",
    "OGCAPI",
    "PostGISRaster",
    "HTTP",
    "NGW",
    "KMLSUPEROVERLAY",
    "ECRGTOC",
    "RPFTOC",
    "TileDB",
    "DERIVED",
];

/// Why a raster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfineError {
    /// A source (or a file of the dataset) outside every root.
    #[error(
        "raster {raster} reads {file:?}, which is not under the raster roots ({roots}); a VRT's sources and a raster's side files must lie under a root too: move them there or add their folder with --root"
    )]
    Outside {
        /// The raster (VRT) that names it.
        raster: String,
        /// The offending source as written (or as GDAL lists it).
        file: String,
        /// The roots, for the message.
        roots: String,
    },
    /// A source that is a GDAL virtual file system path or a connection string.
    #[error(
        "raster {raster} reads {file:?}, a GDAL virtual file system (/vsi…), URL or driver connection string, which this daemon does not allow (it could read remote addresses or files outside the roots); use plain paths under a raster root, or start the daemon with allow_vsi"
    )]
    Virtual {
        /// The raster (VRT) that names it.
        raster: String,
        /// The offending source as written.
        file: String,
    },
    /// A source with a `..` component.
    #[error(
        "raster {raster} reads {file:?}, which contains `..`; give sources as paths inside the raster roots without `..`"
    )]
    Parent {
        /// The raster (VRT) that names it.
        raster: String,
        /// The offending source as written.
        file: String,
    },
    /// A relative source not marked `relativeToVRT="1"`: GDAL would resolve it
    /// against the daemon's working folder.
    #[error(
        "raster {raster} reads {file:?} relative to the daemon's working folder (relativeToVRT is not \"1\"); give an absolute path under a raster root or mark it relativeToVRT=\"1\""
    )]
    CwdRelative {
        /// The raster (VRT) that names it.
        raster: String,
        /// The offending source as written.
        file: String,
    },
    /// A source under a root that does not exist.
    #[error("raster {raster} reads {file:?}, which does not exist")]
    Missing {
        /// The raster (VRT) that names it.
        raster: String,
        /// The missing source as written.
        file: String,
    },
    /// A driver the daemon does not open.
    #[error(
        "raster {raster} is a {driver} dataset, which can fetch URLs or read files named inside it; this daemon does not open it: convert it to a GeoTIFF under a raster root"
    )]
    Driver {
        /// The file.
        raster: String,
        /// GDAL's driver short name.
        driver: String,
    },
    /// VRTs nested too deep or in a cycle.
    #[error(
        "raster {raster}: its VRT sources nest more than {MAX_VRT_DEPTH} levels deep or refer back to themselves; flatten it (gdal_translate -of VRT) or use a GeoTIFF"
    )]
    Nesting {
        /// The VRT where the walk stopped.
        raster: String,
    },
    /// A VRT that cannot be checked (unreadable, too large, not XML).
    #[error("raster {raster} is a VRT that cannot be checked: {why}")]
    BadVrt {
        /// The VRT.
        raster: String,
        /// What went wrong.
        why: String,
    },
}

impl ConfineError {
    /// True when the refusal is about where the raster reads from (HTTP 403); false
    /// for rasters that are malformed or missing a source (422).
    pub fn is_forbidden(&self) -> bool {
        !matches!(
            self,
            ConfineError::Missing { .. }
                | ConfineError::Nesting { .. }
                | ConfineError::BadVrt { .. }
        )
    }
}

/// Why one source string was refused before touching the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRefusal {
    /// `/vsi…`, a URL, inline XML or a `DRIVER:` connection string.
    Virtual,
    /// A `..` component.
    Parent,
    /// Relative, but not relative to the VRT.
    CwdRelative,
    /// Empty.
    Empty,
}

/// GDAL's `atoi` reading of an attribute (leading blanks, sign, digits; 0 otherwise).
pub fn gdal_atoi(text: &str) -> i64 {
    let t = text.trim_start();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let mut v: i64 = 0;
    for c in digits.chars() {
        match c.to_digit(10) {
            Some(d) => v = v.saturating_mul(10).saturating_add(i64::from(d)),
            None => break,
        }
    }
    if neg { -v } else { v }
}

/// True when `text` is something other than a plain file path to GDAL: a `/vsi…`
/// path, a URL (`://`), inline XML, or a `DRIVER:`-style connection string (a `:`
/// before the first `/`).
pub fn is_virtual(text: &str) -> bool {
    if text.contains("/vsi") || text.contains("://") || text.contains('<') {
        return true;
    }
    let head = text.split('/').next().unwrap_or("");
    head.contains(':')
}

/// Resolves one VRT source as GDAL's VRT driver does: absolute paths as written,
/// relative ones against the VRT's folder when `relative_to_vrt` (the attribute) reads
/// as non-zero. Refuses what cannot be checked as a local path.
///
/// # Errors
///
/// A [`SourceRefusal`] saying why the source is not a plain checkable path.
pub fn resolve_source(
    text: &str,
    relative_to_vrt: Option<&str>,
    vrt_dir: &Path,
) -> Result<PathBuf, SourceRefusal> {
    if text.is_empty() {
        return Err(SourceRefusal::Empty);
    }
    if is_virtual(text) {
        return Err(SourceRefusal::Virtual);
    }
    let path = Path::new(text);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(SourceRefusal::Parent);
    }
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    if relative_to_vrt.map(gdal_atoi).unwrap_or(0) != 0 {
        Ok(vrt_dir.join(path))
    } else {
        Err(SourceRefusal::CwdRelative)
    }
}

/// One file reference found in a VRT: the text and its `relativeToVRT` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// The element's text, as GDAL reads it.
    pub text: String,
    /// The `relativeToVRT` attribute, if any.
    pub relative_to_vrt: Option<String>,
}

/// True for the element names whose text GDAL opens as a file (case-insensitive, as
/// GDAL's `CPLGetXMLNode` compares): `SourceFilename` (simple, complex, raw, mask,
/// overview and pansharpening sources), `SourceDataset` (warped VRTs).
fn names_a_file(element: &str) -> bool {
    let lower = element.to_ascii_lowercase();
    lower.ends_with("filename") || lower == "sourcedataset"
}

fn c_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: GDAL's XML nodes hold NUL-terminated strings it owns.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Every file reference in the VRT XML `xml`, parsed with GDAL's own parser.
///
/// # Errors
///
/// A message when GDAL cannot parse it.
pub fn vrt_sources(xml: &[u8]) -> Result<Vec<SourceRef>, String> {
    // GDAL reads the file as a C string: it ends at the first NUL.
    let end = xml.iter().position(|&b| b == 0).unwrap_or(xml.len());
    let text = CString::new(xml.get(..end).unwrap_or_default())
        .map_err(|_| "it holds a NUL byte".to_string())?;
    // SAFETY: `text` is a valid C string; the tree is destroyed below and not used after.
    let tree = unsafe { gdal_sys::CPLParseXMLString(text.as_ptr()) };
    if tree.is_null() {
        return Err("GDAL cannot parse it as XML".into());
    }
    let mut found = Vec::new();
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        // SAFETY: every pointer on the stack is a live node of `tree`.
        let n = unsafe { *node };
        if !n.psNext.is_null() {
            stack.push(n.psNext);
        }
        if n.eType != gdal_sys::CPLXMLNodeType::CXT_Element {
            continue;
        }
        if !n.psChild.is_null() {
            stack.push(n.psChild);
        }
        if names_a_file(&c_str(n.pszValue)) {
            found.push(element_ref(n.psChild));
        }
    }
    // SAFETY: `tree` came from CPLParseXMLString and is freed once.
    unsafe { gdal_sys::CPLDestroyXMLNode(tree) };
    Ok(found)
}

/// The text children and the `relativeToVRT` attribute of an element whose first
/// child is `child`.
fn element_ref(mut child: *mut gdal_sys::CPLXMLNode) -> SourceRef {
    let mut r = SourceRef {
        text: String::new(),
        relative_to_vrt: None,
    };
    while !child.is_null() {
        // SAFETY: `child` is a live node of the tree being walked.
        let c = unsafe { *child };
        if c.eType == gdal_sys::CPLXMLNodeType::CXT_Text {
            r.text.push_str(&c_str(c.pszValue));
        } else if c.eType == gdal_sys::CPLXMLNodeType::CXT_Attribute
            && c_str(c.pszValue).eq_ignore_ascii_case("relativeToVRT")
            && !c.psChild.is_null()
        {
            // SAFETY: an attribute's child is its text node.
            r.relative_to_vrt = Some(c_str(unsafe { (*c.psChild).pszValue }));
        }
        child = c.psNext;
    }
    r
}

/// The short names of GDAL's registered drivers minus [`DENIED_DRIVERS`].
fn allowed_drivers() -> &'static [String] {
    static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();
    ALLOWED.get_or_init(|| {
        (0..DriverManager::count())
            .filter_map(|i| DriverManager::get_driver(i).ok())
            .map(|d| d.short_name())
            .filter(|n| !DENIED_DRIVERS.iter().any(|d| d.eq_ignore_ascii_case(n)))
            .collect()
    })
}

/// Opens `path` (already checked) with the allowed drivers only.
///
/// # Errors
///
/// GDAL's error when no allowed driver opens it.
pub fn open_allowed(path: &Path) -> gdal::errors::Result<Dataset> {
    let names: Vec<&str> = allowed_drivers().iter().map(String::as_str).collect();
    Dataset::open_ex(
        path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_RASTER | GdalOpenFlags::GDAL_OF_VERBOSE_ERROR,
            allowed_drivers: Some(&names),
            ..Default::default()
        },
    )
}

/// `GDAL_OF_RASTER` (gdal.h), for `GDALIdentifyDriverEx`.
const GDAL_OF_RASTER: std::ffi::c_uint = 0x02;

/// The driver GDAL would pick for `path`, without opening it with that driver.
fn identify_driver(path: &Path) -> Option<String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: valid C string; null lists mean "any driver" and "look for siblings".
    let drv = unsafe {
        gdal_sys::GDALIdentifyDriverEx(
            c.as_ptr(),
            GDAL_OF_RASTER,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if drv.is_null() {
        return None;
    }
    // SAFETY: a driver handle's short name is a static string owned by GDAL.
    Some(c_str(unsafe { gdal_sys::GDALGetDriverShortName(drv) }))
}

/// True when the first KiB of `path` names a VRT (GDAL's VRT driver test).
fn looks_like_vrt(path: &Path) -> bool {
    let mut head = Vec::with_capacity(1024);
    let ok = std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_end(&mut head))
        .is_ok();
    ok && head.windows(11).any(|w| w == b"<VRTDataset")
}

impl Confinement {
    fn roots_text(&self) -> String {
        self.roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn under_roots(&self, canonical: &Path) -> bool {
        self.roots.iter().any(|r| canonical.starts_with(r))
    }

    /// Checks everything `path` (what GDAL will be asked to open; the canonical path
    /// of a raster under a root) would make GDAL read, before GDAL opens it.
    ///
    /// # Errors
    ///
    /// A [`ConfineError`] naming the offending file.
    pub fn check(&self, path: &Path) -> Result<(), ConfineError> {
        // Registers GDAL's drivers (identification needs them).
        let _ = allowed_drivers();
        let shown = path.display().to_string();
        if is_virtual(&shown) {
            return if self.allow_vsi {
                Ok(())
            } else {
                Err(ConfineError::Virtual {
                    raster: shown.clone(),
                    file: shown,
                })
            };
        }
        let mut walk = Walk {
            conf: self,
            top: shown,
            on_path: Vec::new(),
            done: HashSet::new(),
        };
        walk.file(path, path, 1)
    }

    /// Checks GDAL's own list of the files of an opened dataset (the raster, its
    /// sidecars, a VRT's sources) against the roots.
    ///
    /// # Errors
    ///
    /// [`ConfineError::Outside`] or [`ConfineError::Virtual`] for the first offending file.
    pub fn check_file_list(&self, raster: &Path, dataset: &Dataset) -> Result<(), ConfineError> {
        let shown = raster.display().to_string();
        for f in file_list(dataset) {
            if f.starts_with("/vsi") || f.contains("://") {
                if self.allow_vsi {
                    continue;
                }
                return Err(ConfineError::Virtual {
                    raster: shown,
                    file: f,
                });
            }
            // A listed file that does not exist cannot be read.
            if let Ok(c) = Path::new(&f).canonicalize()
                && !self.under_roots(&c)
            {
                return Err(ConfineError::Outside {
                    raster: shown,
                    file: f,
                    roots: self.roots_text(),
                });
            }
        }
        Ok(())
    }
}

/// GDAL's file list of `dataset` (`GDALGetFileList`).
pub fn file_list(dataset: &Dataset) -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: the list is a NULL-terminated array of C strings owned by the caller,
    // freed with CSLDestroy below.
    unsafe {
        let list = gdal_sys::GDALGetFileList(dataset.c_dataset());
        if list.is_null() {
            return out;
        }
        let mut i = 0;
        loop {
            let p = *list.add(i);
            if p.is_null() {
                break;
            }
            out.push(c_str(p));
            i += 1;
        }
        gdal_sys::CSLDestroy(list);
    }
    out
}

/// State of one recursive check.
struct Walk<'a> {
    conf: &'a Confinement,
    top: String,
    /// Canonical VRTs on the current path (cycle detection).
    on_path: Vec<PathBuf>,
    /// Canonical files already checked (a mosaic may name one file many times).
    done: HashSet<PathBuf>,
}

impl Walk<'_> {
    /// Checks the file GDAL opens as `seen` (named `written` by its parent).
    fn file(&mut self, seen: &Path, written: &Path, depth: usize) -> Result<(), ConfineError> {
        let raster = self.top.clone();
        let written_text = written.display().to_string();
        let Ok(canonical) = seen.canonicalize() else {
            return Err(if self.conf.under_roots(seen) {
                ConfineError::Missing {
                    raster,
                    file: written_text,
                }
            } else {
                ConfineError::Outside {
                    raster,
                    file: written_text,
                    roots: self.conf.roots_text(),
                }
            });
        };
        if !self.conf.under_roots(&canonical) {
            return Err(ConfineError::Outside {
                raster,
                file: written_text,
                roots: self.conf.roots_text(),
            });
        }
        if self.on_path.contains(&canonical) || depth > MAX_VRT_DEPTH {
            return Err(ConfineError::Nesting {
                raster: written_text,
            });
        }
        if !self.done.insert(canonical.clone()) {
            return Ok(());
        }
        let driver = identify_driver(seen);
        if let Some(d) = &driver
            && DENIED_DRIVERS.iter().any(|x| x.eq_ignore_ascii_case(d))
        {
            return Err(ConfineError::Driver {
                raster: written_text,
                driver: d.clone(),
            });
        }
        if driver.as_deref() == Some("VRT") || looks_like_vrt(seen) {
            self.on_path.push(canonical);
            let r = self.vrt(seen, &written_text, depth);
            self.on_path.pop();
            return r;
        }
        // Any other format: open it with the allowed drivers and check its file list
        // (sidecars, external data files). A file GDAL cannot open is left to the
        // caller's open, which says why.
        if let Ok(ds) = open_allowed(seen) {
            self.conf.check_file_list(seen, &ds)?;
        }
        Ok(())
    }

    /// Checks every source of the VRT GDAL opens as `seen`.
    fn vrt(&mut self, seen: &Path, written: &str, depth: usize) -> Result<(), ConfineError> {
        let bad = |why: String| ConfineError::BadVrt {
            raster: written.to_string(),
            why,
        };
        let file = std::fs::File::open(seen).map_err(|e| bad(e.to_string()))?;
        let mut xml = Vec::new();
        file.take(MAX_VRT_BYTES + 1)
            .read_to_end(&mut xml)
            .map_err(|e| bad(e.to_string()))?;
        if xml.len() as u64 > MAX_VRT_BYTES {
            return Err(bad(format!("it is larger than {MAX_VRT_BYTES} bytes")));
        }
        let dir = seen.parent().unwrap_or(Path::new("/"));
        let top = self.top.clone();
        for s in vrt_sources(&xml).map_err(bad)? {
            let refused = |why: SourceRefusal| {
                let (raster, file) = (top.clone(), s.text.clone());
                match why {
                    SourceRefusal::Virtual => ConfineError::Virtual { raster, file },
                    SourceRefusal::Parent => ConfineError::Parent { raster, file },
                    SourceRefusal::CwdRelative => ConfineError::CwdRelative { raster, file },
                    SourceRefusal::Empty => ConfineError::BadVrt {
                        raster: written.to_string(),
                        why: "a source has an empty file name".into(),
                    },
                }
            };
            if self.conf.allow_vsi && (s.text.contains("/vsi") || s.text.contains("://")) {
                // The operator allowed virtual file systems (and so the network).
                continue;
            }
            let resolved =
                resolve_source(&s.text, s.relative_to_vrt.as_deref(), dir).map_err(refused)?;
            self.file(&resolved, Path::new(&s.text), depth + 1)?;
        }
        Ok(())
    }
}

/// GDAL settings for a process that reads clients' rasters (the daemon), behind the path checks: no Python in VRT
/// pixel functions, and (unless `allow_vsi`) no `/vsicurl/`-family request at all, by
/// allowing only one file name that no request can have.
pub fn gdal_defences(allow_vsi: bool) {
    let mut options = vec![("GDAL_VRT_ENABLE_PYTHON", "NO")];
    if !allow_vsi {
        options.push((
            "CPL_VSIL_CURL_ALLOWED_FILENAME",
            "/vsicurl/nexttile-daemon-allows-no-network-reads",
        ));
    }
    for (key, value) in options {
        if let Err(e) = gdal::config::set_config_option(key, value) {
            tracing::warn!("cannot set GDAL option {key}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_reads_like_c() {
        assert_eq!(gdal_atoi("1"), 1);
        assert_eq!(gdal_atoi(" 1"), 1);
        assert_eq!(gdal_atoi("01"), 1);
        assert_eq!(gdal_atoi("1x"), 1);
        assert_eq!(gdal_atoi("true"), 0);
        assert_eq!(gdal_atoi(""), 0);
        assert_eq!(gdal_atoi("-2"), -2);
    }

    #[test]
    fn virtual_and_connection_strings() {
        for v in [
            "/vsicurl/http://127.0.0.1:1/x.tif",
            "/vsizip//etc/a.zip/x.tif",
            "sub/vsis3/x",
            "http://example.com/x.tif",
            "vrt:///etc/x.tif",
            "NETCDF:\"/data/x.nc\":var",
            "GTIFF_DIR:1:/data/x.tif",
            "<VRTDataset rasterXSize=\"1\"/>",
        ] {
            assert!(is_virtual(v), "{v}");
        }
        for p in ["/data/x.tif", "x.tif", "sub/x.tif", "/data/a:b.tif"] {
            assert!(!is_virtual(p), "{p}");
        }
    }

    #[test]
    fn sources_resolve_as_the_vrt_driver_does() {
        let dir = Path::new("/roots/a");
        assert_eq!(
            resolve_source("x.tif", Some("1"), dir),
            Ok(PathBuf::from("/roots/a/x.tif"))
        );
        assert_eq!(
            resolve_source("sub/x.tif", Some(" 1"), dir),
            Ok(PathBuf::from("/roots/a/sub/x.tif"))
        );
        // absolute paths ignore the attribute
        assert_eq!(
            resolve_source("/elsewhere/x.tif", Some("1"), dir),
            Ok(PathBuf::from("/elsewhere/x.tif"))
        );
        assert_eq!(
            resolve_source("x.tif", Some("0"), dir),
            Err(SourceRefusal::CwdRelative)
        );
        assert_eq!(
            resolve_source("x.tif", None, dir),
            Err(SourceRefusal::CwdRelative)
        );
        assert_eq!(
            resolve_source("../x.tif", Some("1"), dir),
            Err(SourceRefusal::Parent)
        );
        assert_eq!(
            resolve_source("/vsicurl/http://h/x.tif", Some("0"), dir),
            Err(SourceRefusal::Virtual)
        );
        assert_eq!(
            resolve_source("", Some("1"), dir),
            Err(SourceRefusal::Empty)
        );
    }

    #[test]
    fn every_file_element_is_found_case_insensitively() {
        let xml = br#"<?xml version="1.0"?>
<VRTDataset rasterXSize="1" rasterYSize="1">
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource><SourceFilename relativeToVRT="1">a.tif</SourceFilename></SimpleSource>
    <ComplexSource><sourcefilename RELATIVETOVRT="0">/x/b.tif</sourcefilename></ComplexSource>
  </VRTRasterBand>
  <VRTRasterBand dataType="Byte" band="2" subClass="VRTRawRasterBand">
    <SourceFilename relativetoVRT="1">raw.bin</SourceFilename>
  </VRTRasterBand>
  <GDALWarpOptions><SourceDataset relativeToVRT="0">/y/c.tif</SourceDataset></GDALWarpOptions>
</VRTDataset>"#;
        let mut found = vrt_sources(xml).unwrap();
        found.sort_by(|a, b| a.text.cmp(&b.text));
        let got: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|s| (s.text.as_str(), s.relative_to_vrt.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/x/b.tif", Some("0")),
                ("/y/c.tif", Some("0")),
                ("a.tif", Some("1")),
                ("raw.bin", Some("1")),
            ]
        );
        assert!(vrt_sources(b"<VRTDataset><unclosed").is_err());
    }

    #[test]
    fn nested_vrts_cycles_and_disguises() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let vrt = |src: &str, rel: u8| {
            format!(
                "<VRTDataset rasterXSize=\"1\" rasterYSize=\"1\"><VRTRasterBand dataType=\"Byte\" band=\"1\"><SimpleSource><SourceFilename relativeToVRT=\"{rel}\">{src}</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>"
            )
        };
        let conf = Confinement {
            roots: vec![root.canonicalize().unwrap()],
            allow_vsi: false,
        };
        let root = conf.roots[0].clone();
        std::fs::write(
            out.join("x.vrt"),
            vrt("/vsicurl/http://127.0.0.1:9/x.tif", 0),
        )
        .unwrap();
        std::fs::write(
            root.join("o.vrt"),
            vrt(&out.join("x.vrt").display().to_string(), 0),
        )
        .unwrap();
        // a VRT pointing outside: refused at the first hop, naming the source
        let e = conf.check(&root.join("o.vrt")).unwrap_err();
        assert!(
            matches!(&e, ConfineError::Outside { file, .. } if file.ends_with("out/x.vrt")),
            "{e}"
        );
        // the same chain inside the root: the /vsicurl/ source is refused
        std::fs::write(
            root.join("x.vrt"),
            vrt("/vsicurl/http://127.0.0.1:9/x.tif", 0),
        )
        .unwrap();
        std::fs::write(root.join("disguised.tif"), vrt("x.vrt", 1)).unwrap();
        let e = conf.check(&root.join("disguised.tif")).unwrap_err();
        assert!(
            matches!(&e, ConfineError::Virtual { file, .. } if file.starts_with("/vsicurl/")),
            "{e}"
        );
        // a cycle
        std::fs::write(root.join("a.vrt"), vrt("b.vrt", 1)).unwrap();
        std::fs::write(root.join("b.vrt"), vrt("a.vrt", 1)).unwrap();
        assert!(matches!(
            conf.check(&root.join("a.vrt")),
            Err(ConfineError::Nesting { .. })
        ));
        // a missing source inside the root
        std::fs::write(root.join("m.vrt"), vrt("nope.tif", 1)).unwrap();
        assert!(matches!(
            conf.check(&root.join("m.vrt")),
            Err(ConfineError::Missing { .. })
        ));
        // a symlink in the root pointing out
        #[cfg(unix)]
        {
            std::fs::write(out.join("secret.bin"), b"secret").unwrap();
            std::os::unix::fs::symlink(out.join("secret.bin"), root.join("link.bin")).unwrap();
            std::fs::write(root.join("l.vrt"), vrt("link.bin", 1)).unwrap();
            assert!(matches!(
                conf.check(&root.join("l.vrt")),
                Err(ConfineError::Outside { .. })
            ));
        }
        // a driver that fetches URLs named inside the file, under any name
        std::fs::write(
            root.join("wms.tif"),
            "<GDAL_WMS><Service name=\"TMS\"><ServerUrl>http://127.0.0.1:9/${z}/${x}/${y}.png</ServerUrl></Service></GDAL_WMS>",
        )
        .unwrap();
        let e = conf.check(&root.join("wms.tif")).unwrap_err();
        assert!(
            matches!(&e, ConfineError::Driver { driver, .. } if driver == "WMS"),
            "{e}"
        );
        // a GeoTIFF whose side file is a link out of the root: GDAL's file list shows it
        #[cfg(unix)]
        {
            let tif = root.join("side.tif");
            let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
            let mut ds = drv.create(&tif, 4, 4, 1).unwrap();
            ds.set_geo_transform(&[437000.0, 10.0, 0.0, 4180000.0, 0.0, -10.0])
                .unwrap();
            drop(ds);
            assert!(conf.check(&tif).is_ok());
            std::fs::write(out.join("aux.xml"), "<PAMDataset></PAMDataset>").unwrap();
            std::os::unix::fs::symlink(out.join("aux.xml"), root.join("side.tif.aux.xml")).unwrap();
            let e = conf.check(&tif).unwrap_err();
            assert!(
                matches!(&e, ConfineError::Outside { file, .. } if file.ends_with("side.tif.aux.xml")),
                "{e}"
            );
        }
        // with allow_vsi the vsicurl source passes the check
        let open = Confinement {
            allow_vsi: true,
            ..conf.clone()
        };
        assert!(open.check(&root.join("disguised.tif")).is_ok());
    }
}
