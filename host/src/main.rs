//! The `weir` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use weir::config::Config;

/// A proxy allocates and frees many small buffers per request on several threads; mimalloc's
/// thread-local free lists make that measurably cheaper than glibc malloc (`cargo xtask bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A WebAssembly plugin-driven programmable gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file (TOML).
        #[arg(short, long, default_value = "weir.toml")]
        config: PathBuf,
    },
    /// Load and validate the configuration and every plugin, then exit: 0 if all is well,
    /// 1 after printing every error.
    Check {
        #[arg(short, long, default_value = "weir.toml")]
        config: PathBuf,
    },
    /// Run a small echo server (for the quickstart and benchmarks).
    DemoBackend {
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: std::net::SocketAddr,
    },
    /// Write, build and test plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a plugin directory that builds and passes its smoke test as it is.
    New {
        /// The SDK language.
        #[arg(long)]
        lang: weir::authoring::Language,
        /// The plugin's name (lowercase letters, digits, '-').
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the plugin in DIR into DIR/<name>.wasm with its language's toolchain.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build, then run DIR/smoke.toml through a real gateway and an echo backend.
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Push a component to a registry in the CNCF Wasm artifact layout (a proxy-wasm filter in
    /// the Envoy/Istio layout); prints its digest.
    /// Credentials: WEIR_REGISTRY_USERNAME/WEIR_REGISTRY_PASSWORD or ~/.docker/config.json.
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// oci://host[:port]/repo:tag
        reference: String,
        /// Also sign the pushed manifest with this private key (from `weir plugin keygen`).
        #[arg(long)]
        sign_key: Option<PathBuf>,
    },
    /// Sign a pushed plugin's manifest digest; the signature is pushed beside it.
    Sign {
        reference: String,
        /// The private key file from `weir plugin keygen`.
        #[arg(long)]
        key: PathBuf,
    },
    /// Make an ed25519 key pair for signing plugins: DIR/weir-signing.key (keep it secret)
    /// and DIR/weir-signing.pub (for `verify = { public_key = ... }`).
    Keygen {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Pull a component into the local cache (verifying digests); prints where it is.
    Pull { reference: String },
    /// Show a pushed component's manifest digest, layers, annotations, imports and exports.
    Inspect { reference: String },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal (and not with NO_COLOR): in a file or a pipe, escape codes
        // corrupt the lines.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            let checked = Config::load(&config).and_then(|c| {
                tokio::runtime::Runtime::new()
                    .map_err(|e| {
                        weir::diagnostic::Diagnostics(vec![weir::diagnostic::Diagnostic::new(
                            format!("cannot start the async runtime: {e}"),
                        )])
                    })?
                    .block_on(weir::gateway::check(&c))
            });
            match checked {
                Ok(()) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(diags) => {
                    eprintln!("{diags}");
                    eprintln!("{}: {} error(s)", config.display(), diags.0.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(diags) => {
                    eprintln!("{diags}");
                    return ExitCode::FAILURE;
                }
            };
            block_on(weir::gateway::run(config))
        }
        Command::DemoBackend { listen } => block_on(weir::demo_backend::run(listen)),
        Command::Plugin { command } => plugin(command),
    }
}

fn plugin(command: PluginCommand) -> ExitCode {
    let result = match command {
        PluginCommand::New { lang, name, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            weir::authoring::new(lang, &name, &dir)
                .map(|files| {
                    for f in files {
                        println!("created {}", f.display());
                    }
                    println!(
                        "next: weir plugin build {0} && weir plugin test {0}",
                        dir.display()
                    );
                })
                .map_err(|e| e.to_string())
        }
        PluginCommand::Build { dir } => weir::authoring::build(&dir)
            .map(|out| println!("built {}", out.display()))
            .map_err(|e| e.to_string()),
        PluginCommand::Test { dir } => weir::authoring::test(&dir).map_err(|e| e.to_string()),
        PluginCommand::Push {
            file,
            reference,
            sign_key,
        } => registry(async move {
            let reference = weir::oci::OciRef::parse(&reference)?;
            let key = match &sign_key {
                Some(k) => {
                    Some(std::fs::read_to_string(k).map_err(|e| format!("{}: {e}", k.display()))?)
                }
                None => None,
            };
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let title = file
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            let digest = weir::oci::registry::push(&bytes, &reference, &title).await?;
            println!("pushed {reference}@{digest}");
            if let Some(key) = key {
                let sig = weir::oci::signature::sign(&key, &digest)?;
                weir::oci::registry::push_signature(&reference, &digest, &sig).await?;
                println!("signed {reference}@{digest}");
            }
            Ok(())
        }),
        PluginCommand::Sign { reference, key } => registry(async move {
            let reference = weir::oci::OciRef::parse(&reference)?;
            let key =
                std::fs::read_to_string(&key).map_err(|e| format!("{}: {e}", key.display()))?;
            let digest = weir::oci::registry::manifest_digest(&reference).await?;
            let sig = weir::oci::signature::sign(&key, &digest)?;
            weir::oci::registry::push_signature(&reference, &digest, &sig).await?;
            println!("signed {reference}@{digest}");
            Ok(())
        }),
        PluginCommand::Keygen { dir } => (|| {
            let (private, public) = weir::oci::signature::generate()?;
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let (k, p) = (dir.join("weir-signing.key"), dir.join("weir-signing.pub"));
            if k.exists() {
                return Err(format!("{} exists; not overwriting a key", k.display()));
            }
            write_secret(&k, &private).map_err(|e| e.to_string())?;
            std::fs::write(&p, public).map_err(|e| e.to_string())?;
            println!("wrote {} (secret) and {}", k.display(), p.display());
            Ok(())
        })(),
        PluginCommand::Pull { reference } => registry(async move {
            let reference = weir::oci::OciRef::parse(&reference)?;
            let cache = weir::oci::OciCache::new(weir::oci::OciCache::default_root());
            let pulled = weir::oci::registry::pull(&reference, &cache).await?;
            println!(
                "pulled {reference}@{} (component {}, {} bytes)",
                pulled.manifest_digest,
                pulled.component_digest,
                pulled.component.len()
            );
            Ok(())
        }),
        PluginCommand::Inspect { reference } => registry(async move {
            let reference = weir::oci::OciRef::parse(&reference)?;
            let info = weir::oci::registry::inspect(&reference).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&info).unwrap_or_default()
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a file only its owner may read (a private key).
fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Runs a registry command on a runtime of its own.
fn registry(
    fut: impl std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
) -> Result<(), String> {
    tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(fut)
        .map_err(|e| e.to_string())
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
