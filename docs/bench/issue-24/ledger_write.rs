//! The announcer's ledger write, four ways, on the disk of `--state-dir`:
//! what "decides -> intent recorded" spends in the file system (issue 24,
//! point 3, session 7). Build and run (root's disk, as the driver's):
//!   rustc -O -o /tmp/ledger_write docs/bench/issue-24/ledger_write.rs
//!   /tmp/ledger_write DIR ROUNDS ENTRIES
//! Each round does one write of each kind in turn, 2 ms apart (the kinds
//! alternate, so they see the same disk): `replace` (today's ledger: the
//! whole file to a temporary beside it, renamed over; no flush), `append`
//! (one record appended to a file kept open; no flush), `append+fdatasync`,
//! and `replace+fsyncs` (the file and the directory flushed: the ledger
//! before 1920766, and `store::write_atomic`). Prints n, median, p90, p99
//! and max per kind in microseconds, and /proc/loadavg at start and end.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn replace(dir: &Path, bytes: &[u8], flush: bool) -> std::io::Result<()> {
    let tmp = dir.join(".announced.json.tmp");
    let path = dir.join("announced.json");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if flush {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, &path)?;
    if flush {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let dir = Path::new(a.get(1).map(String::as_str).unwrap_or("/var/tmp/ledger-write"));
    let rounds: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let entries: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    fs::create_dir_all(dir)?;
    // A ledger of `entries` paths as serde_json writes it (one line).
    let mut whole = String::from("{\"version\":1,\"paths\":{");
    for i in 0..entries {
        if i > 0 {
            whole.push(',');
        }
        whole.push_str(&format!(
            "\"10.30.{}.{}/32\":{{\"next_hop\":\"192.0.2.1\",\"uuid\":\"0123456789abcdef0123456789abcdef\"}}",
            i / 250,
            i % 250
        ));
    }
    whole.push_str("}}");
    let record = b"{\"intend\":[[\"10.30.1.5/32\",\"192.0.2.1\"],[\"fd00:31:1::5/128\",\"fd00:30::1\"]]}\n";
    let mut journal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("announced.journal"))?;
    let kinds = ["replace", "append", "append+fdatasync", "replace+fsyncs"];
    let mut us: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    println!("loadavg at start: {}", fs::read_to_string("/proc/loadavg")?.trim());
    for r in 0..rounds {
        for k in 0..kinds.len() {
            let kk = (k + r) % kinds.len();
            std::thread::sleep(Duration::from_millis(2));
            let t = Instant::now();
            match kk {
                0 => replace(dir, whole.as_bytes(), false)?,
                1 => journal.write_all(record)?,
                2 => {
                    journal.write_all(record)?;
                    journal.sync_data()?;
                }
                _ => replace(dir, whole.as_bytes(), true)?,
            }
            us[kk].push(t.elapsed().as_secs_f64() * 1e6);
        }
        if r % 200 == 199 {
            journal.set_len(0)?;
        }
    }
    println!("loadavg at end: {}", fs::read_to_string("/proc/loadavg")?.trim());
    println!("ledger of {entries} paths ({} bytes), record {} bytes, {rounds} rounds", whole.len(), record.len());
    for (k, v) in us.iter_mut().enumerate() {
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).max(1) - 1];
        println!(
            "{:18} n {} median {:.0} p90 {:.0} p99 {:.0} max {:.0} us",
            kinds[k], v.len(), q(0.5), q(0.9), q(0.99), v[v.len() - 1]
        );
    }
    Ok(())
}
