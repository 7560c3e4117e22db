//! The load generator: the agencies' HTTPS clients and the consuming agency, in a process
//! of their own, as they are in a deployment. The bench starts the same binary as
//! `liaison bench-load --run <JSON>` for each full-path run and talks to it over its
//! standard input and output, one line at a time:
//!
//! 1. the generator opens its connections, starts consuming and makes its leads, then
//!    prints `ready`;
//! 2. the bench notes every process's CPU time and writes `go`;
//! 3. the generator posts, waits until every lead is consumed and prints its
//!    [`PathResult`] as one JSON line;
//! 4. the bench notes CPU times again (the generator is still alive, so its own counts are
//!    readable) and closes the generator's input, on which it exits.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::cpu::{CpuUse, Snapshot};
use super::full::{PathResult, Run};
use super::stages::{Stages, Totals};

/// The subcommand of the `liaison` binary that runs the load generator.
pub const SUBCOMMAND: &str = "bench-load";

const READY: &str = "ready";
const GO: &str = "go";

/// The generator's side: runs `run` (a [`Run`] as JSON) under the protocol above.
pub async fn serve(run: &str) -> anyhow::Result<()> {
    let run: Run = serde_json::from_str(run).context("the load generator's run")?;
    let ready = run.prepare().await?;
    let mut stdout = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    stdout.write_all(format!("{READY}\n").as_bytes()).await?;
    stdout.flush().await?;
    match lines.next_line().await? {
        Some(line) if line == GO => {}
        other => bail!("the bench said {other:?} instead of {GO}"),
    }
    let result = ready.go().await?;
    stdout
        .write_all(format!("{}\n", serde_json::to_string(&result)?).as_bytes())
        .await?;
    stdout.flush().await?;
    // Stay alive until the bench has read this process's CPU time.
    while lines.next_line().await?.is_some() {}
    Ok(())
}

/// The bench's side: starts the generator for `run`, and returns its result with the CPU
/// time of every process over the measured part.
pub async fn run(run: &Run) -> anyhow::Result<PathResult> {
    let exe = std::env::current_exe().context("finding the liaison binary")?;
    let mut child = tokio::process::Command::new(&exe)
        .arg(SUBCOMMAND)
        .arg("--run")
        .arg(serde_json::to_string(run)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the load generator {}", exe.display()))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().context("the generator's input")?;
    let mut lines = BufReader::new(child.stdout.take().context("the generator's output")?).lines();
    let result = async {
        match lines.next_line().await? {
            Some(line) if line == READY => {}
            other => bail!("the load generator said {other:?} instead of {READY}"),
        }
        let before = Snapshot::take(pid);
        let totals_before = Totals::take();
        stdin.write_all(format!("{GO}\n").as_bytes()).await?;
        stdin.flush().await?;
        let line = lines
            .next_line()
            .await?
            .context("the load generator ended without a result")?;
        let after = Snapshot::take(pid);
        let totals_after = Totals::take();
        let mut result: PathResult =
            serde_json::from_str(&line).context("the load generator's result")?;
        result.cpu = Some(CpuUse::between(&before, &after, result.messages));
        result.stages = Some(Stages::between(&totals_before, &totals_after));
        Ok(result)
    }
    .await;
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .context("the load generator did not exit")??;
    match result {
        Ok(result) if status.success() => Ok(result),
        Ok(_) => bail!("the load generator exited with {status}"),
        Err(e) => Err(e.context(format!("load generator ({status})"))),
    }
}
