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
use sealgate_envelope::{Backend, EnvelopeMeta, ObjectKey, DEK_LEN};
use sealgate_filters::keys::KeyProvider;
use zeroize::Zeroizing;

/// An object's data key, unwrapped by `provider` under the key id and
/// context its envelope names, and its object key, derived only once the
/// data key matches the envelope's commitment (a wrong or swapped key is
/// refused before any frame is opened).
pub(crate) async fn unwrap_checked(
    provider: &dyn KeyProvider,
    meta: &EnvelopeMeta,
) -> Result<(Zeroizing<[u8; DEK_LEN]>, ObjectKey), String> {
    let dek = provider
        .decrypt_data_key(&meta.key_id, &meta.wrapped_dek, &meta.context)
        .await
        .map_err(|e| format!("unwrapping its data key: {e}"))?;
    let key = ObjectKey::derive_checked(
        &dek,
        &meta.salt,
        &meta.context_hash(),
        &meta.commitment,
        Backend::default_backend(),
    )
    .map_err(|_| "its data key does not match its commitment".to_string())?;
    Ok((dek, key))
}

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
