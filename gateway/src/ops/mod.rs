//! Operator commands: they talk to the backend directly with the
//! gateway's configuration and envelope code, so they work while the
//! gateway fleet is down. Long runs show a progress bar on a terminal and
//! end with a summary.

pub mod audit;
pub mod breakglass;
pub mod migrate;
pub mod rewrap;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A run's spinner on stderr, counting objects, with `msg` for the tally:
/// drawn only where stderr is a terminal (hidden in pipes, logs and cron),
/// and lines printed through `suspend` never tear it.
pub(crate) fn spinner() -> Result<ProgressBar, String> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} objects, {msg} [{elapsed}]")
            .map_err(|e| e.to_string())?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    Ok(bar)
}
