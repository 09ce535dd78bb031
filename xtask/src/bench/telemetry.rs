//! `cargo xtask bench-telemetry [--duration SECS] [--connections N] [--rounds N]`
//!
//! Proxy throughput with tracing off, on at 100 % sampling and on at 1 %, in the same run,
//! exporting over OTLP/HTTP to a collector stand-in (nginx answering `/v1/traces` with an empty
//! 200, which is a valid empty OTLP response). Printed as ratios to the run without telemetry.

use super::{
    free_port, measure, options, start_backend, start_nginx, start_weir, tempdir, wait_for,
};
use anyhow::Result;

pub fn telemetry(args: &[String]) -> Result<()> {
    let o = options(args)?;
    super::ensure_tools()?;
    let (weir, _plugins) = super::build_release(o.weir.as_deref())?;
    let dir = tempdir()?;
    let (_backend, backend) = start_backend(&dir)?;
    let collector = free_port()?;
    let _collector = start_nginx(
        &dir,
        "collector",
        1,
        &format!(
            "server {{ listen 127.0.0.1:{collector}; location /v1/traces {{ return 200 \"\"; }} }}"
        ),
    )?;
    wait_for(collector, "collector nginx")?;
    let mut rows = Vec::new();
    for (label, sampling) in [
        ("off", None),
        ("on, 100 %", Some(1.0)),
        ("on, 1 %", Some(0.01)),
    ] {
        let port = free_port()?;
        let telemetry = sampling.map_or(String::new(), |s: f64| {
            format!(
                "[telemetry]\nendpoint = \"http://127.0.0.1:{collector}/v1/traces\"\nprotocol = \"http\"\nsampling = {s}\n"
            )
        });
        let config = format!(
            "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n{telemetry}[upstreams.backend]\nendpoints = [\"http://127.0.0.1:{backend}\"]\n\
             [[routes]]\nname = \"bench\"\nupstream = \"backend\"\n"
        );
        let _guard = start_weir(
            &weir,
            &dir,
            &format!("telemetry-{}", rows.len()),
            &config,
            port,
        )?;
        let m = measure(port, &o)?;
        eprintln!("telemetry {label:<10} {:>10.0} req/s", m.rps);
        rows.push((label, m));
    }
    let base = rows[0].1;
    println!(
        "\n## Tracing cost (wrk -t2 -c{} -d{}s, median of {} rounds, OTLP/HTTP export)\n",
        o.connections, o.duration, o.rounds
    );
    println!("| telemetry | req/s | / off | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|");
    for (label, s) in &rows {
        println!(
            "| {label} | {:.0} | {:.2} | {:.3} | {:.3} |",
            s.rps,
            s.rps / base.rps,
            s.p50_ms,
            s.p99_ms
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
