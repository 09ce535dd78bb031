//! The CNCF TAG-Runtime layout of a Wasm component as an OCI artifact: an image manifest whose
//! config (`application/vnd.wasm.config.v0+json`) lists the component's imports and exports
//! (architecture `wasm`, os `wasip2`) and whose single layer (`application/wasm`) is the
//! component. This is what `wkg oci push` writes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The older layout Envoy and Istio read (`WasmPlugin` images): also accepted on pull, and what
/// proxy-wasm filters (core modules) are pushed as.
pub const ISTIO_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// That layout's config media type.
pub const ISTIO_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";

/// Whether a layer holds the component: the CNCF layout's `application/wasm`, or the older
/// Envoy/Istio layer type.
pub fn is_wasm_layer(media_type: &str) -> bool {
    media_type == LAYER_MEDIA_TYPE || media_type == ISTIO_LAYER_MEDIA_TYPE
}

/// Manifest annotation naming the WIT world a Weir plugin targets.
pub const WORLD_ANNOTATION: &str = "dev.weir.plugin.world";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub layer_digests: Vec<String>,
    pub component: ComponentSummary,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ComponentSummary {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// The top-level import and export names of a component (e.g. `weir:plugin/request@0.2.0`,
/// `init`), read without compiling it.
pub fn summarize(bytes: &[u8]) -> Result<ComponentSummary, String> {
    use wasmparser::{Parser, Payload};
    let mut summary = ComponentSummary::default();
    let mut depth = 0usize;
    let mut is_component = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a Wasm component: {e}"))? {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    is_component = encoding == wasmparser::Encoding::Component;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| e.to_string())?;
                    summary.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    summary.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !is_component {
        return Err("a core Wasm module, not a component".into());
    }
    Ok(summary)
}

/// The config blob for `component`, whose layer digest is `layer_digest`.
pub fn config(component: &[u8], layer_digest: &str) -> Result<WasmConfig, String> {
    Ok(WasmConfig {
        created: now_rfc3339(),
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![layer_digest.to_string()],
        component: summarize(component)?,
    })
}

/// Manifest annotations for a pushed plugin.
pub fn annotations(title: &str, world: Option<&str>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("org.opencontainers.image.title".into(), title.to_string());
    a.insert("org.opencontainers.image.created".into(), now_rfc3339());
    if let Some(w) = world {
        a.insert(WORLD_ANNOTATION.into(), w.to_string());
    }
    a
}

fn now_rfc3339() -> String {
    // Seconds resolution is enough for `created`; avoid a date crate for one timestamp.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_a_component_and_refuses_a_module() {
        let bytes = wat::parse_str(
            r#"(component
                (import "weir:plugin/log@0.2.0" (instance))
                (component $inner (import "nested:only/x" (instance)))
                (export "again" (instance 0)))"#,
        )
        .expect("wat");
        let s = summarize(&bytes).expect("component");
        // Only the top level counts, not the nested component's imports.
        assert_eq!(s.imports, ["weir:plugin/log@0.2.0"]);
        assert_eq!(s.exports, ["again"]);
        let module = wat::parse_str("(module)").expect("wat");
        assert!(summarize(&module).is_err());
        assert!(summarize(b"junk").is_err());
        assert_eq!(now_rfc3339().len(), 20);
    }
}
