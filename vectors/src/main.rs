//! `coffer-vectors`: writes Coffer's test vectors, or checks them against the reference.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Generate Coffer's deterministic YAML test vectors, or check a directory of them against the
/// reference implementation.
#[derive(Parser)]
#[command(name = "coffer-vectors", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write every vector file and its JSON Schema (same code, same bytes).
    #[command(
        after_help = "Example:\n  cargo run -p coffer-vectors -- generate          # rewrites vectors/*.yaml and vectors/schema/"
    )]
    Generate {
        /// Where to write (default: the crate's own vectors/ directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Run every case of the files in DIR against the reference implementation.
    Check {
        /// Where the files are (default: vectors/).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("coffer-vectors: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    match Cli::parse().command {
        Command::Generate { out } => {
            let dir = out.unwrap_or_else(coffer_vectors::vectors_dir);
            for path in coffer_vectors::write_all(&dir)? {
                println!("wrote {}", path.display());
            }
            Ok(true)
        }
        Command::Check { dir } => {
            let dir = dir.unwrap_or_else(coffer_vectors::vectors_dir);
            let mut all_hold = true;
            for topic in coffer_vectors::TOPICS {
                let path = dir.join(format!("{}.yaml", topic.name));
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let started = std::time::Instant::now();
                let failures =
                    (topic.verify)(&text).with_context(|| format!("parsing {}", path.display()))?;
                println!(
                    "{}: {} failures ({:.1} s)",
                    topic.name,
                    failures.len(),
                    started.elapsed().as_secs_f64()
                );
                for failure in &failures {
                    println!("  {failure}");
                }
                all_hold &= failures.is_empty();
            }
            Ok(all_hold)
        }
    }
}
