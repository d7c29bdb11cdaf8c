//! Errors for degenerate input to the selection strategies.

use thiserror::Error;

use crate::sampling::strategy::Strategy;

/// What can go wrong when selecting tiles.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplingError {
    /// The embedding matrix and the uncertainty vector disagree on the number of tiles.
    #[error(
        "embeddings have {embedding_rows} rows but there are {uncertainty_len} uncertainty \
         values; pass one embedding row and one uncertainty per tile, in the same order"
    )]
    ShapeMismatch {
        /// Rows `N` of the `[N, D]` embedding matrix.
        embedding_rows: usize,
        /// Length of the uncertainty vector.
        uncertainty_len: usize,
    },

    /// A boolean mask (excluded / labelled / eligible) has the wrong length.
    #[error(
        "the {mask} mask has {mask_len} entries but there are {tiles} tiles; pass one flag \
         per tile"
    )]
    MaskLengthMismatch {
        /// Which mask: `"excluded"`, `"labelled"` or `"eligible"`.
        mask: &'static str,
        /// Length of the mask.
        mask_len: usize,
        /// Number of tiles `N`.
        tiles: usize,
    },

    /// An uncertainty value of an eligible tile is NaN or infinite.
    #[error(
        "uncertainty of tile {tile} is {value}, which is not finite; fix the model output \
         for that tile or exclude it (when there is no model yet, pass zeros)"
    )]
    NonFiniteUncertainty {
        /// Tile index.
        tile: usize,
        /// The offending value.
        value: f32,
    },

    /// An embedding coordinate of an eligible tile (or of a labelled tile used as a
    /// core-set centre) is NaN or infinite.
    #[error(
        "embedding of tile {tile} has {value} in dimension {dim}, which is not finite; \
         re-encode that tile, or exclude it (a labelled tile serves as a core-set centre, \
         so its embedding must be finite too)"
    )]
    NonFiniteEmbedding {
        /// Tile index.
        tile: usize,
        /// Embedding dimension.
        dim: usize,
        /// The offending value.
        value: f32,
    },

    /// The embeddings have no dimensions, so distances carry no information.
    #[error(
        "embeddings have 0 dimensions; distance-based selection needs an [N, D] matrix \
         with D >= 1"
    )]
    NoEmbeddingDimensions,

    /// The budget is zero.
    #[error("the budget is 0; ask for at least one tile")]
    ZeroBudget,

    /// The number of farthest-point anchors is zero.
    #[error(
        "the number of anchors is 0; ask for at least one, or leave it unset to use the budget"
    )]
    ZeroAnchors,

    /// The neighbourhood size `k` is zero.
    #[error("the neighbourhood size k is 0; use k >= 1 (k = 1 keeps only the anchor itself)")]
    ZeroNeighbours,

    /// The number of k-means clusters is zero.
    #[error(
        "the number of clusters is 0; ask for at least one (the clustering strategy uses \
         the budget)"
    )]
    ZeroClusters,

    /// The candidate factor `m` of the clustering strategy is zero.
    #[error(
        "the candidate factor m is 0; use m >= 1 (the m·b most uncertain tiles are clustered; \
         m = 1 clusters exactly the b most uncertain, Möllenbrok et al. use m = 3 or 4)"
    )]
    ZeroCandidateFactor,

    /// A tile's known or predicted class is not one of the head's classes.
    #[error(
        "tile {tile} has class index {class} but the head has {classes} classes; pass \
         class indices 0..{classes} (labels and predictions of the same head)"
    )]
    ClassOutOfRange {
        /// Tile index.
        tile: usize,
        /// The offending class index.
        class: usize,
        /// Number of classes.
        classes: usize,
    },

    /// The tile centres for the spacing constraint do not match the tiles.
    #[error(
        "there are {centres} tile centres but {tiles} tiles; pass one [x, y] centre in metres \
         per tile, in the same order as the embeddings"
    )]
    CentresLengthMismatch {
        /// Number of centres that were passed.
        centres: usize,
        /// Number of tiles `N`.
        tiles: usize,
    },

    /// The centre of an eligible or labelled tile is NaN or infinite.
    #[error(
        "the centre of tile {tile} is ({x}, {y}), which is not finite; fix its map \
         coordinates (metres in a projected CRS) or exclude the tile"
    )]
    NonFiniteCentre {
        /// Tile index.
        tile: usize,
        /// Easting (metres).
        x: f64,
        /// Northing (metres).
        y: f64,
    },

    /// The minimum ground spacing is NaN or infinite.
    #[error(
        "the minimum spacing {value} m is not a finite distance; pass metres (0 or less \
         turns the spacing constraint off)"
    )]
    InvalidSpacing {
        /// The value that was given.
        value: f64,
    },

    /// A tile index (start point, query) is past the end.
    #[error("tile index {index} is out of range for {tiles} tiles; use an index below {tiles}")]
    IndexOutOfRange {
        /// The index that was given.
        index: usize,
        /// Number of tiles `N`.
        tiles: usize,
    },

    /// A start point was given that may not be picked.
    #[error(
        "tile {index} is excluded and cannot start the farthest-point sampling; start from \
         an eligible tile"
    )]
    NotEligible {
        /// The index that was given.
        index: usize,
    },

    /// A strategy parameter is out of its range.
    #[error("{message}")]
    InvalidParameter {
        /// What is wrong and which values are valid.
        message: String,
    },

    /// A strategy name could not be parsed.
    #[error(
        "unknown selection strategy {name:?}; expected one of: {}",
        Strategy::names_list()
    )]
    UnknownStrategy {
        /// The name that was given.
        name: String,
    },
}
