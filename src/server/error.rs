//! API errors: an HTTP status and a message that says what is wrong and how to fix it,
//! sent as `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ErrorKind;

/// The HTTP status of each [`ErrorKind`], the one table of them: what an engine error
/// of that kind is answered with, and the status of [`ApiError::of_kind`]. (Routes may
/// answer a finer status of the same kind, e.g. 403 or 413 for bad input: see
/// [`kind_of`].)
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Cancelled => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::RuntimeMissing | ErrorKind::CannotWrite | ErrorKind::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The kind of an error answered with `status` by a route: client errors are bad
/// input (404 not found, 409 conflict), 429 and 503 unavailable, 507 (full disk)
/// cannot write, the rest internal.
pub fn kind_of(status: StatusCode) -> ErrorKind {
    match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::INSUFFICIENT_STORAGE => ErrorKind::CannotWrite,
        StatusCode::CONFLICT => ErrorKind::Conflict,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
        s if s.is_client_error() => ErrorKind::BadInput,
        _ => ErrorKind::Internal,
    }
}

/// The JSON body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong and how to fix it.
    pub error: String,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of failure it is (a job that ends with [`ErrorKind::Cancelled`] is
    /// recorded `cancelled`).
    pub kind: ErrorKind,
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`, of the kind that status says ([`kind_of`]).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            kind: kind_of(status),
            status,
            message: message.into(),
        }
    }

    /// An error of `kind`, answered with that kind's status ([`status_for`]).
    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: status_for(kind),
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a missing `what`.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 500 for an internal failure, or 507 with advice when the message says the disk
    /// is full (an I/O error's `No space left on device`, SQLite's `database or disk
    /// is full`).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        let message = message.to_string();
        if reads_as_storage_full(&message) {
            Self::storage_full(message)
        } else {
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
        }
    }

    /// 507 Insufficient Storage: `what` failed because the disk of the data folder is
    /// full, with what to do about it.
    pub fn storage_full(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "{what}; the disk holding the daemon's data folder (--data-dir) is full and the failed write was not kept: free space on that disk, then retry"
            ),
        )
    }
}

/// Whether an error message reads as a full disk or an exhausted quota (ENOSPC,
/// EDQUOT, SQLite's `SQLITE_FULL`), for errors that reach here only as text (GDAL's,
/// or an I/O error already formatted).
fn reads_as_storage_full(message: &str) -> bool {
    [
        "No space left on device",
        "Disk quota exceeded",
        "database or disk is full",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Whether `e` or any error under it ([`std::error::Error::source`]) is a full disk:
/// an I/O error of kind `StorageFull` or `QuotaExceeded`, or one whose text says so.
pub fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return true;
        }
        if reads_as_storage_full(&e.to_string()) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Seconds a client is told to wait (`Retry-After`) when the job queue is full.
pub const RETRY_AFTER_S: u64 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_S),
            );
        }
        resp
    }
}

impl From<crate::store::DbError> for ApiError {
    fn from(e: crate::store::DbError) -> Self {
        match e {
            crate::store::DbError::Full { .. } => ApiError::storage_full(e),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        let kind = e.kind();
        // Only failures of the daemon's own writes: a 422's message may quote the client.
        if status_for(kind) == StatusCode::INTERNAL_SERVER_ERROR && is_storage_full(&e) {
            return ApiError::storage_full(e);
        }
        ApiError::of_kind(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Engine errors keep the statuses they had when they were mapped from exit codes
    /// (3 -> 422, 130 -> 409, others 500), and their kind.
    #[test]
    fn engine_errors_answer_their_kinds_status() {
        let cases = [
            (crate::Error::Invalid("x".into()), 422, ErrorKind::BadInput),
            (crate::Error::Cancelled, 409, ErrorKind::Cancelled),
            (crate::Error::Internal("x".into()), 500, ErrorKind::Internal),
        ];
        for (e, status, kind) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.kind), (status, kind), "{a:?}");
        }
        assert_eq!(
            ApiError::new(StatusCode::FORBIDDEN, "x").kind,
            ErrorKind::BadInput
        );
        assert_eq!(ApiError::not_found("x").kind, ErrorKind::NotFound);
        assert_eq!(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "x").kind,
            ErrorKind::Unavailable
        );
    }

    /// A full disk is a 507 with advice however it arrives: SQLite's `SQLITE_FULL`, an
    /// I/O error (ENOSPC, EDQUOT) inside an engine error, or the text of one; other
    /// failures stay 500.
    #[test]
    fn a_full_disk_is_507_with_advice() {
        let full = crate::store::DbError::Full {
            path: "/data/nexttile.sqlite".into(),
            message: "insert label: database or disk is full".into(),
        };
        let io = |errno| crate::Error::Io {
            path: "/data/scenes/1/heatmap.tif".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let cases = [
            ApiError::from(full),
            ApiError::from(io(libc::ENOSPC)),
            ApiError::from(io(libc::EDQUOT)),
            ApiError::internal(std::io::Error::from_raw_os_error(libc::ENOSPC)),
            ApiError::internal("GDAL: TIFFAppendToStrip: Write error: No space left on device"),
        ];
        for e in cases {
            assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE, "{e:?}");
            assert_eq!(e.kind, ErrorKind::CannotWrite, "{e:?}");
            assert!(
                e.message.contains("is full") && e.message.contains("free space on that disk"),
                "{e:?}"
            );
        }
        let other = crate::store::DbError::Sqlite {
            path: "/data/nexttile.sqlite".into(),
            message: "insert label: disk I/O error".into(),
        };
        assert_eq!(
            ApiError::from(other).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::from(io(libc::EACCES)).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::internal("the engine worker stopped").status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
