//! One module per subcommand.

pub mod audit;
pub mod check;
pub mod doctor;
pub mod exec;
pub mod run;
