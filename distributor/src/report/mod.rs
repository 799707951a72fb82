//! What `pfs lab --report DIR` writes, and the one JSON schema every `--json` report follows.
//!
//! - [`plot`]: the SVG plots (plotters, SVG backend): completion CDF, WAN throughput over time,
//!   per-phone completion timeline, the hierarchies' trees.
//! - [`markdown`]: `report.md`, opening with what was run ([`RunInfo`]).
//! - [`schema`]: `schema_version` and `kind` on every JSON report; `docs/report.md` documents
//!   every field, and a test holds the two together.
//! - [`sample`]: the WAN byte counter sampled while a lab run goes on.

use std::{io, net::Ipv4Addr, path::Path};

use clap::ValueEnum;

use crate::lab::LabReport;

pub mod markdown;
pub mod plot;
pub mod sample;
pub mod schema;

/// One reading of the WAN link's byte counter during a run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WanSample {
    /// Seconds since the run's common boot instant (negative: during power-on).
    pub t_s: f64,
    /// Bytes hq has sent over the WAN link since the run started.
    pub tx_bytes: u64,
}

/// When one phone finished a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhoneTime {
    pub phone: Ipv4Addr,
    pub model: String,
    /// Seconds from the common boot to a verified install; `None`: never installed.
    pub installed_s: Option<f64>,
    /// Times this phone fell back to the origin (over all its files).
    pub fallbacks: u32,
}

/// What was run, for the head of `report.md`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunInfo {
    /// The exact command line, shell-quoted.
    pub command: String,
    pub version: String,
    /// Git commit the binary was built from (`unknown` outside a checkout).
    pub commit: String,
    pub host: HostInfo,
    pub site: SiteInfo,
    /// UTC, RFC 3339.
    pub date: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostInfo {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SiteInfo {
    pub phones: usize,
    pub models: Vec<String>,
    pub wan_mbit: f64,
    pub wan_burst_kib: Option<u32>,
    /// Each phone's port; `None`: unshaped.
    pub lan_mbit: Option<f64>,
    pub wan_rtt_ms: Option<f64>,
    /// Fraction of packets dropped on the WAN.
    pub wan_loss: Option<f64>,
    pub fanout: u8,
    pub origin: String,
    pub backend: String,
    pub seed: u64,
}

impl SiteInfo {
    /// The site a lab builds from `cfg`.
    pub fn of_lab(cfg: &crate::lab::LabConfig) -> SiteInfo {
        let name = |v: Option<clap::builder::PossibleValue>| {
            v.map_or(String::new(), |v| v.get_name().to_owned())
        };
        SiteInfo {
            phones: cfg.phones,
            models: cfg.models.clone(),
            wan_mbit: cfg.wan_mbit,
            wan_burst_kib: cfg.wan_burst_kib,
            lan_mbit: cfg.lan_mbit,
            wan_rtt_ms: cfg.wan_rtt_ms,
            wan_loss: (cfg.faults.loss > 0.0).then_some(cfg.faults.loss),
            fanout: cfg.fanout,
            // Which server and which protocol the phones used (`pfs over http`).
            origin: format!(
                "{} over {}",
                name(cfg.origin.to_possible_value()),
                name(cfg.origin_proto.to_possible_value())
            ),
            backend: name(cfg.backend.to_possible_value()),
            seed: cfg.seed,
        }
    }
}

impl RunInfo {
    /// The command line, version, commit, host and date of this process; `site` from the caller.
    pub fn here(site: SiteInfo) -> RunInfo {
        RunInfo {
            command: std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("PFS_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_owned(),
            host: HostInfo::here(),
            site,
            date: rfc3339_utc(std::time::SystemTime::now()),
        }
    }
}

impl HostInfo {
    pub fn here() -> HostInfo {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        HostInfo {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned()),
        }
    }
}

/// `a` as a POSIX shell word: bare when it is safe, else single-quoted.
pub fn shell_quote(a: &str) -> String {
    let safe = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The files [`write_lab_report`] writes, in the order `report.md` shows them.
pub const LAB_PLOTS: [&str; 4] = ["cdf.svg", "wan.svg", "timeline.svg", "tree.svg"];

/// Writes `report.md` and the plots for `runs` into `dir`. `tree_of` (`MODEL/FILE`) draws only
/// that hierarchy. Returns the paths written.
pub fn write_lab_report(
    dir: &Path,
    runs: &[LabReport],
    info: &RunInfo,
    tree_of: Option<&str>,
) -> io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut put = |name: &str, body: String| -> io::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, body)?;
        written.push(p);
        Ok(())
    };
    let tree_run = plot::tree_run(runs);
    put("report.md", markdown::lab(runs, info, tree_run, tree_of))?;
    put(
        "cdf.svg",
        plot::cdf(&plot::cdf_series(runs)).map_err(io::Error::other)?,
    )?;
    put("wan.svg", plot::wan(runs).map_err(io::Error::other)?)?;
    put(
        "timeline.svg",
        plot::timeline(runs).map_err(io::Error::other)?,
    )?;
    put(
        "tree.svg",
        plot::trees(tree_run, tree_of).map_err(io::Error::other)?,
    )?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_quoting() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096);
        assert_eq!(rfc3339_utc(t), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339_utc(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(shell_quote("--phones"), "--phones");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
