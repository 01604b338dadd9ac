//! The `ipvlan-bgp` binary: parses flags, sets up logging, runs the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ipvlan_bgp::api::client;
use ipvlan_bgp::config::{Cli, Command, IpamCommand, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipvlan-bgp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Some(Command::Status {
                socket,
                json,
                watch,
                interval,
            }) => {
                if !watch {
                    print!("{}", status_once(&socket, json).await?);
                    return Ok(());
                }
                // Redraw until interrupted; a driver that is down (restarting
                // during an incident) is shown as an error and asked again.
                loop {
                    let text = status_once(&socket, json)
                        .await
                        .unwrap_or_else(|e| format!("ipvlan-bgp: {e:#}\n"));
                    print!(
                        "\x1b[H\x1b[2J{}  (every {interval}s, Ctrl-C to stop)\n{text}",
                        ipvlan_bgp::api::status::format_utc(ipvlan_bgp::metrics::now_unix())
                    );
                    tokio::time::sleep(Duration::from_secs(interval)).await;
                }
            }
            Some(Command::Drain {
                socket,
                wait,
                timeout,
            }) => drain(&socket, true, wait.then(|| Duration::from_secs(timeout))).await,
            Some(Command::Undrain { socket }) => drain(&socket, false, None).await,
            Some(Command::Cleanup(args)) => {
                let report = ipvlan_bgp::cleanup::run(&args)?;
                print!("{}", report.text());
                if report.failures > 0 {
                    anyhow::bail!(
                        "{} steps of the cleanup failed (see above)",
                        report.failures
                    );
                }
                Ok(())
            }
            Some(Command::Metrics { socket }) => {
                let r =
                    client::post(&socket, "/metrics", Vec::new(), Duration::from_secs(5)).await?;
                print!("{}", String::from_utf8_lossy(&r.body));
                Ok(())
            }
            Some(Command::Ipam { socket, command }) => ipam(&socket, command).await,
            None => {
                init_logging(cli.run.log_format, &cli.run.log_level);
                ipvlan_bgp::run(cli.run, shutdown_signal()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipvlan-bgp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The status document as text (or pretty JSON).
async fn status_once(socket: &std::path::Path, json: bool) -> anyhow::Result<String> {
    let r = client::post(
        socket,
        "/IpvlanBgp.Status",
        Vec::new(),
        Duration::from_secs(5),
    )
    .await?;
    let v = r.json()?;
    Ok(if json {
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        ipvlan_bgp::api::status::render_text(&v)
    })
}

/// Drains (or undrains) the running driver; with `wait`, polls its status
/// until the drain is safe to stop, at most that long.
async fn drain(socket: &std::path::Path, on: bool, wait: Option<Duration>) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "Drain": on }))?;
    let r = client::post(socket, "/IpvlanBgp.Drain", body, Duration::from_secs(5)).await?;
    let v = r.json()?;
    if let Some(e) = v["Err"].as_str() {
        anyhow::bail!("{e}");
    }
    if !on {
        println!("undrained: announcements are back to normal");
        return Ok(());
    }
    println!(
        "drained since {}: every announcement carries GRACEFUL_SHUTDOWN (65535:0) and is made less preferred",
        v["Since"]
            .as_u64()
            .map(ipvlan_bgp::api::status::format_utc)
            .unwrap_or_default()
    );
    let Some(limit) = wait else {
        return Ok(());
    };
    let start = std::time::Instant::now();
    let mut last = String::new();
    loop {
        let st = client::post(
            socket,
            "/IpvlanBgp.Status",
            Vec::new(),
            Duration::from_secs(5),
        )
        .await?
        .json()?;
        let b = &st["bgp"];
        if b["enabled"].as_bool() != Some(true) {
            println!("BGP is disabled (--gobgp none): nothing is announced; safe to stop");
            return Ok(());
        }
        let d = &b["drain"];
        let detail = d["detail"].as_str().unwrap_or_default().to_string();
        if detail != last && !detail.is_empty() {
            println!("  {detail}");
            last = detail;
        }
        if let Some(t) = d["safe_since"].as_u64() {
            println!(
                "safe to stop since {} ({} of {} prefixes moved)",
                ipvlan_bgp::api::status::format_utc(t),
                d["moved"],
                d["prefixes"]
            );
            return Ok(());
        }
        if start.elapsed() >= limit {
            anyhow::bail!(
                "not safe to stop after {limit:?}: {} (is gobgpd connected? `ipvlan-bgp status`)",
                if last.is_empty() {
                    "no progress reported"
                } else {
                    &last
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `ipam show` and `ipam release-host`, through the running driver (which
/// holds the etcd settings and credentials).
async fn ipam(socket: &std::path::Path, command: IpamCommand) -> anyhow::Result<()> {
    let (path, body, json) = match &command {
        IpamCommand::Show { json } => ("/IpvlanBgp.IpamShow", Vec::new(), *json),
        IpamCommand::ReleaseHost { host } => (
            "/IpvlanBgp.IpamReleaseHost",
            serde_json::to_vec(&serde_json::json!({ "host": host }))?,
            false,
        ),
    };
    // Reading every block and usage record of a big cluster takes a while.
    let r = client::post(socket, path, body, Duration::from_secs(30)).await?;
    let v = r.json()?;
    if let Some(e) = v.get("Err").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    match command {
        IpamCommand::Show { .. } if json => println!("{}", serde_json::to_string_pretty(&v)?),
        IpamCommand::Show { .. } => print!("{}", ipvlan_bgp::api::ipam::show::render_text(&v)),
        IpamCommand::ReleaseHost { host } => {
            let blocks: Vec<&str> = v["released"]
                .as_array()
                .map(|a| a.iter().filter_map(|b| b.as_str()).collect())
                .unwrap_or_default();
            println!(
                "released {} blocks of host {host}{}{}",
                blocks.len(),
                if blocks.is_empty() { "" } else { ": " },
                blocks.join(" ")
            );
        }
    }
    Ok(())
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down");
}
