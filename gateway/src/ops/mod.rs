//! Operator commands: they talk to the backend directly with the
//! gateway's configuration and envelope code, so they work while the
//! gateway fleet is down. Long runs show a progress bar on a terminal and
//! end with a summary.

pub mod audit;
pub mod rewrap;
