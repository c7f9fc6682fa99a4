//! Describing PostgreSQL errors for operators: SQLSTATE, message, detail and hint, never
//! the connection parameters (which may hold a password).

/// One line: `ERROR 42501: permission denied for schema pgq (hint: …)`, or the client-side
/// cause when the server sent no error.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            if let Some(w) = db.where_() {
                s.push_str(&format!(" (where: {})", w.replace('\n', " / ")));
            }
            s
        }
        None if e.is_closed() => "connection closed".to_string(),
        None => {
            // The Display of a client-side error names the cause; its source chain has
            // the I/O detail.
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(cause) = src {
                s.push_str(": ");
                s.push_str(&cause.to_string());
                src = cause.source();
            }
            s
        }
    }
}

/// The SQLSTATE of a server error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}
