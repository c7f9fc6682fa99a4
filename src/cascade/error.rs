//! The cascade module's error type: what went wrong in the worker or an admin command,
//! with the database and the step named, and Postgres errors kept for their SQLSTATE.

/// Why a cascade worker or admin command stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad operator input (config, arguments, unknown node, wrong node type).
    #[error("{0}")]
    Usage(String),
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] crate::conn::Error),
    /// A statement failed.
    #[error("{node}: {what}: {}", crate::pgerr::describe(.source))]
    Sql {
        /// The node (or database) the statement ran on.
        node: String,
        /// The step that failed.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A pgq_node function answered with an error code (3xx, 4xx, 5xx).
    #[error("{node}: {func}: {code} {note}")]
    Refused {
        /// The node that answered.
        node: String,
        /// The pgq_node function.
        func: String,
        /// ret_code.
        code: i32,
        /// ret_note.
        note: String,
    },
    /// The node's state does not allow the step (lost position, missing tick, …).
    #[error("{0}")]
    State(String),
    /// The batch handler failed.
    #[error("handler: {0}")]
    Handler(crate::consumer::BoxError),
}

impl Error {
    /// Whether the connection is gone (closed, server shutting down, connection
    /// exception): the worker reconnects instead of retrying on the same session.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::Conn(_) => true,
            Error::Sql { source, .. } => {
                source.is_closed()
                    || crate::pgerr::sqlstate(source).is_some_and(|s| {
                        s.starts_with("08") || matches!(s, "57P01" | "57P02" | "57P03")
                    })
            }
            _ => false,
        }
    }

    /// The SQLSTATE of a server error, for logs.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Sql { source, .. } => crate::pgerr::sqlstate(source),
            Error::Handler(e) => e
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(crate::pgerr::sqlstate),
            _ => None,
        }
    }

    /// The exit code of a command that failed with this error: 2 for bad input, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Attaches the node and step to a Postgres error.
pub(crate) fn sql_err(node: &str, what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let node = node.to_string();
    let what = what.to_string();
    move |source| Error::Sql { node, what, source }
}
