//! The verbs of the `miso` command line that live in their own files: flags, calls into the
//! library, printing. No simulation, optimisation or prediction logic lives here.

pub mod simulate;
