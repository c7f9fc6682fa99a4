//! The `pgqd` binary: parses the command line and dispatches to the library. Exit codes:
//! 0 success, 1 runtime failure, 2 usage or config error.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use pgqd::cli::install::{self, InstallArgs};

#[derive(Parser, Debug)]
#[command(name = "pgqd", version, about = "PgQ ticker daemon and tools")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install or upgrade the SQL components in one database.
    ///
    /// Example: pgqd install --dbname app --component pgq
    Install(InstallCmd),
}

/// Connection options shared by the commands that act on one database.
#[derive(Args, Debug)]
struct ConnOpts {
    /// libpq connection string (key=value or URL); PG* variables fill the rest.
    #[arg(long, short = 'c', default_value = "")]
    connstr: String,
    /// Database name (overrides the connection string and PGDATABASE).
    #[arg(long, short = 'd')]
    dbname: Option<String>,
}

#[derive(Args, Debug)]
struct InstallCmd {
    /// Components to install, comma-separated: pgq, ext, coop, triggers.
    #[arg(long, value_delimiter = ',', default_value = "pgq")]
    component: Vec<String>,
    #[command(flatten)]
    conn: ConnOpts,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgqd: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Some(Command::Install(cmd)) => {
            let args = InstallArgs {
                components: cmd.component,
                connstr: cmd.conn.connstr,
                dbname: cmd.conn.dbname,
            };
            match rt.block_on(install::run(&args)) {
                Ok(lines) => {
                    for l in lines {
                        println!("{l}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pgqd install: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        None => {
            eprintln!("pgqd: the daemon is not part of this build yet; see README");
            ExitCode::from(2)
        }
    }
}
