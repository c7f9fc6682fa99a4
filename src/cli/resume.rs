//! `pgqd resume QUEUE`: clears `ticker_paused` (see `pause.rs`).

use super::common::{ConnArgs, Error};

/// Arguments of `pgqd resume`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue to resume.
    pub queue: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Resumes the queue's ticker.
pub async fn run(a: &Args) -> Result<u8, Error> {
    super::pause::set_paused(&a.conn, &a.queue, false).await
}
