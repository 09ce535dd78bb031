//! `weir plugin new | build | test`: start a plugin in any SDK language, build it into a
//! component, and smoke-test it through a real gateway.
//!
//! Everything a build needs from this repository (the WIT, the Python, JavaScript and C SDK
//! files, the pre-generated C bindings) is embedded in the binary, so a plugin directory can live
//! anywhere; only the language's own toolchain must be installed, and a missing one is named
//! with the command that installs it. Rust plugins depend on the `weir-sdk` crate by path.

mod build;
mod manifest;
mod scaffold;
mod smoke;

pub use build::{BuildError, build};
pub use manifest::Language;
pub use scaffold::{ScaffoldError, new};
pub use smoke::{SmokeError, test};
