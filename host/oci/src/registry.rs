//! Talking to registries with `oci-client`: push a component in the CNCF layout, resolve a tag,
//! pull and verify, inspect. Credentials come from `WEIR_REGISTRY_USERNAME` /
//! `WEIR_REGISTRY_PASSWORD`, else from a Docker `config.json` (`$DOCKER_CONFIG` or `~/.docker`),
//! else anonymous. Plain HTTP is used only for loopback registries.

use super::artifact::{self, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use super::cache::OciCache;
use super::reference::OciRef;
use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{0}")]
    Ref(#[from] super::reference::RefError),
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("{reference}: {message}")]
    Artifact { reference: String, message: String },
    #[error(
        "{reference}: digest mismatch: expected {expected}, got {actual} (refusing to load it)"
    )]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a push or a pull ended with.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest's digest (what a tag resolves to).
    pub manifest_digest: String,
    /// The component's digest (the layer).
    pub component_digest: String,
    pub component: Vec<u8>,
}

fn client(reference: &OciRef) -> Client {
    // reqwest's rustls needs a process-wide provider; the gateway uses ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if reference.is_loopback() {
        ClientProtocol::HttpsExcept(vec![reference.registry.clone()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..ClientConfig::default()
    })
}

/// Credentials for `registry`: environment, then Docker's `config.json`, then anonymous.
pub fn auth(registry: &str) -> RegistryAuth {
    if let (Ok(user), Ok(pass)) = (
        std::env::var("WEIR_REGISTRY_USERNAME"),
        std::env::var("WEIR_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(user, pass);
    }
    docker_config_auth(registry).unwrap_or(RegistryAuth::Anonymous)
}

fn docker_config_auth(registry: &str) -> Option<RegistryAuth> {
    use base64::Engine;
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let encoded = json["auths"][registry]["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (user, pass) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(user.to_string(), pass.to_string()))
}

fn registry_error(reference: &OciRef, e: impl std::fmt::Display) -> OciError {
    OciError::Registry {
        registry: reference.registry.clone(),
        message: e.to_string(),
    }
}

/// The config blob and layer of a component in the CNCF layout, and the world it targets.
fn cncf_layout(
    component: &[u8],
    reference: &OciRef,
) -> Result<(Config, ImageLayer, Option<&'static str>), OciError> {
    let artifact_error = |message| OciError::Artifact {
        reference: reference.to_string(),
        message,
    };
    let summary = artifact::summarize(component).map_err(artifact_error)?;
    let world = summary
        .imports
        .iter()
        .any(|i| i.starts_with("weir:plugin/"))
        .then_some("weir:plugin/plugin@0.2.0");
    let layer_digest = crate::digest(component);
    let config = artifact::config(component, &layer_digest).map_err(artifact_error)?;
    let config = Config::new(
        serde_json::to_vec(&config).unwrap_or_default(),
        CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layer = ImageLayer::new(component.to_vec(), LAYER_MEDIA_TYPE.to_string(), None);
    Ok((config, layer, world))
}

/// A proxy-wasm filter (a core module) in the layout Envoy and Istio pull: an empty module
/// config and one `application/vnd.module.wasm.content.layer.v1+wasm` layer.
fn filter_layout(module: &[u8]) -> (Config, ImageLayer, Option<&'static str>) {
    let config = Config::new(
        b"{}".to_vec(),
        artifact::ISTIO_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layer = ImageLayer::new(
        module.to_vec(),
        artifact::ISTIO_LAYER_MEDIA_TYPE.to_string(),
        None,
    );
    (config, layer, None)
}

/// Pushes `component` to `reference` (which must have a tag); returns the manifest digest. A
/// core module (a proxy-wasm filter) goes in the Envoy/Istio layout, a component in the CNCF
/// one.
pub async fn push(component: &[u8], reference: &OciRef, title: &str) -> Result<String, OciError> {
    let (config, layer, world) = if component.starts_with(b"\0asm\x01\0\0\0") {
        filter_layout(component)
    } else {
        cncf_layout(component, reference)?
    };
    let layers = [layer];
    let mut manifest =
        OciImageManifest::build(&layers, &config, Some(artifact::annotations(title, world)));
    manifest.media_type = Some(MANIFEST_MEDIA_TYPE.to_string());
    let client = client(reference);
    let auth = auth(&reference.registry);
    client
        .push(
            &reference.to_client(),
            &layers,
            config,
            &auth,
            Some(manifest),
        )
        .await
        .map_err(|e| registry_error(reference, e))?;
    client
        .fetch_manifest_digest(&reference.to_client(), &auth)
        .await
        .map_err(|e| registry_error(reference, e))
}

/// The manifest (raw bytes, verified against `expected` when given) and its digest.
async fn manifest(
    client: &Client,
    reference: &OciRef,
    auth: &RegistryAuth,
) -> Result<(OciImageManifest, String, Vec<u8>), OciError> {
    // Docker's v2 manifest has the same shape; images built by Docker-based tools use it.
    let accepted = [
        MANIFEST_MEDIA_TYPE,
        "application/vnd.docker.distribution.manifest.v2+json",
    ];
    // The registry's own digest header is not trusted: the digest is computed from the bytes.
    let (raw, _registry_digest) = client
        .pull_manifest_raw(&reference.to_client(), auth, &accepted)
        .await
        .map_err(|e| registry_error(reference, e))?;
    let actual = crate::digest(&raw);
    if let Some(expected) = &reference.digest
        && *expected != actual
    {
        return Err(OciError::DigestMismatch {
            reference: reference.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    let parsed: OciManifest = serde_json::from_slice(&raw).map_err(|e| OciError::Artifact {
        reference: reference.to_string(),
        message: format!("invalid manifest: {e}"),
    })?;
    match parsed {
        OciManifest::Image(m) => Ok((m, actual, raw.to_vec())),
        OciManifest::ImageIndex(_) => Err(OciError::Artifact {
            reference: reference.to_string(),
            message: "an image index, not a single component".into(),
        }),
    }
}

/// Pulls the component `reference` names, verifying every digest, into `cache`.
pub async fn pull(reference: &OciRef, cache: &OciCache) -> Result<Pulled, OciError> {
    let client = client(reference);
    let auth = auth(&reference.registry);
    let (manifest, manifest_digest, raw) = manifest(&client, reference, &auth).await?;
    let layer = manifest
        .layers
        .iter()
        .find(|l| artifact::is_wasm_layer(&l.media_type))
        .ok_or_else(|| OciError::Artifact {
            reference: reference.to_string(),
            message: format!("no {LAYER_MEDIA_TYPE} layer in the manifest"),
        })?;
    let component = match cache.blob(&layer.digest) {
        Some(bytes) => bytes,
        None => {
            let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
            client
                .pull_blob(&reference.to_client(), layer, &mut bytes)
                .await
                .map_err(|e| {
                    // oci-client checks the digest while streaming; keep its verdict ours.
                    let text = e.to_string();
                    match text.split_once("got ") {
                        Some((_, actual)) if text.contains("Digest error") => {
                            OciError::DigestMismatch {
                                reference: reference.to_string(),
                                expected: layer.digest.clone(),
                                actual: actual.trim().to_string(),
                            }
                        }
                        _ => registry_error(reference, e),
                    }
                })?;
            bytes
        }
    };
    let component_digest = crate::digest(&component);
    if component_digest != layer.digest {
        return Err(OciError::DigestMismatch {
            reference: reference.to_string(),
            expected: layer.digest.clone(),
            actual: component_digest,
        });
    }
    cache.put_blob(&component)?;
    cache.put_blob(&raw)?;
    if let Some(tag) = &reference.tag {
        cache.put_tag(
            &reference.registry,
            &reference.repository,
            tag,
            &manifest_digest,
        )?;
    }
    Ok(Pulled {
        manifest_digest,
        component_digest,
        component,
    })
}

/// The digest of the manifest `reference` points to in its registry.
pub async fn manifest_digest(reference: &OciRef) -> Result<String, OciError> {
    let client = client(reference);
    let (_, digest, _) = manifest(&client, reference, &auth(&reference.registry)).await?;
    Ok(digest)
}

/// The digest of the component `reference` currently points to in its registry.
pub async fn component_digest(reference: &OciRef) -> Result<String, OciError> {
    let client = client(reference);
    let auth = auth(&reference.registry);
    let (manifest, _, _) = manifest(&client, reference, &auth).await?;
    manifest
        .layers
        .iter()
        .find(|l| artifact::is_wasm_layer(&l.media_type))
        .map(|l| l.digest.clone())
        .ok_or_else(|| OciError::Artifact {
            reference: reference.to_string(),
            message: format!("no {LAYER_MEDIA_TYPE} layer in the manifest"),
        })
}

/// The component a cached manifest points to, if both are in the cache.
pub fn from_cache(reference: &OciRef, cache: &OciCache) -> Option<Pulled> {
    let manifest_digest = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => cache.tag(&reference.registry, &reference.repository, t)?,
        (None, None) => return None,
    };
    let raw = cache.blob(&manifest_digest)?;
    let manifest: OciImageManifest = serde_json::from_slice(&raw).ok()?;
    let layer = manifest
        .layers
        .iter()
        .find(|l| artifact::is_wasm_layer(&l.media_type))?;
    let component = cache.blob(&layer.digest)?;
    Some(Pulled {
        manifest_digest,
        component_digest: layer.digest.clone(),
        component,
    })
}

/// The manifest, the config and their digests, for `weir plugin inspect`.
pub async fn inspect(reference: &OciRef) -> Result<serde_json::Value, OciError> {
    let client = client(reference);
    let auth = auth(&reference.registry);
    let (manifest, manifest_digest, _) = manifest(&client, reference, &auth).await?;
    let mut config = Vec::new();
    client
        .pull_blob(&reference.to_client(), &manifest.config, &mut config)
        .await
        .map_err(|e| registry_error(reference, e))?;
    let config: serde_json::Value =
        serde_json::from_slice(&config).unwrap_or(serde_json::Value::Null);
    Ok(serde_json::json!({
        "reference": reference.to_string(),
        "manifest_digest": manifest_digest,
        "media_type": manifest.media_type,
        "config_media_type": manifest.config.media_type,
        "layers": manifest.layers.iter().map(|l| serde_json::json!({
            "media_type": l.media_type, "digest": l.digest, "size": l.size,
        })).collect::<Vec<_>>(),
        "annotations": manifest.annotations,
        "config": config,
    }))
}

/// Pushes `signature` for `manifest_digest` under its `.sig` tag in `reference`'s repository.
pub async fn push_signature(
    reference: &OciRef,
    manifest_digest: &str,
    signature: &[u8],
) -> Result<(), OciError> {
    use super::signature::{SIGNATURE_CONFIG_MEDIA_TYPE, SIGNATURE_MEDIA_TYPE, tag_for};
    let sig_ref = OciRef {
        tag: Some(tag_for(manifest_digest)),
        digest: None,
        ..reference.clone()
    };
    let config = Config::new(
        serde_json::to_vec(&serde_json::json!({ "manifestDigest": manifest_digest }))
            .unwrap_or_default(),
        SIGNATURE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layers = [ImageLayer::new(
        signature.to_vec(),
        SIGNATURE_MEDIA_TYPE.to_string(),
        None,
    )];
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(MANIFEST_MEDIA_TYPE.to_string());
    client(&sig_ref)
        .push(
            &sig_ref.to_client(),
            &layers,
            config,
            &auth(&reference.registry),
            Some(manifest),
        )
        .await
        .map_err(|e| registry_error(reference, e))?;
    Ok(())
}

/// The signature stored for `manifest_digest`: from the registry (then cached), or from the
/// cache when the registry cannot be reached. `Ok(None)`: the registry has none.
pub async fn signature(
    reference: &OciRef,
    manifest_digest: &str,
    cache: &OciCache,
) -> Result<Option<Vec<u8>>, OciError> {
    use super::signature::{SIGNATURE_MEDIA_TYPE, tag_for};
    let tag = tag_for(manifest_digest);
    let sig_ref = OciRef {
        tag: Some(tag.clone()),
        digest: None,
        ..reference.clone()
    };
    let client = client(&sig_ref);
    let auth = auth(&reference.registry);
    let fetched = async {
        let (m, _, _) = manifest(&client, &sig_ref, &auth).await?;
        let Some(layer) = m
            .layers
            .iter()
            .find(|l| l.media_type == SIGNATURE_MEDIA_TYPE)
        else {
            return Ok(None);
        };
        let mut sig = Vec::new();
        client
            .pull_blob(&sig_ref.to_client(), layer, &mut sig)
            .await
            .map_err(|e| registry_error(reference, e))?;
        Ok::<_, OciError>(Some(sig))
    }
    .await;
    match fetched {
        Ok(Some(sig)) => {
            let d = cache.put_blob(&sig)?;
            cache.put_tag(&reference.registry, &reference.repository, &tag, &d)?;
            Ok(Some(sig))
        }
        Ok(None) => Ok(None),
        Err(OciError::Registry { message, .. })
            if message.contains("manifest unknown")
                || message.contains("404")
                || message.contains("not found") =>
        {
            Ok(None)
        }
        Err(e) => match cache
            .tag(&reference.registry, &reference.repository, &tag)
            .and_then(|d| cache.blob(&d))
        {
            Some(sig) => Ok(Some(sig)),
            None => Err(e),
        },
    }
}
