//! The pure logic of the operator commands (`sealgate audit`, `migrate`,
//! `rewrap`): what each makes of an object's stored headers, what it
//! writes, and the summary it prints. Their I/O is in the gateway's `ops`.

pub mod audit;
pub mod migrate;
pub mod rewrap;
