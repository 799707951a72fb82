//! The origin in `hq`: the embedded pfs origin (TFTP, and HTTP when phones fetch over HTTP),
//! nginx or tftpd-hpa, serving the site's loads.

use super::*;

pub(super) enum OriginGuard {
    /// The embedded origin, with its HTTP side when phones fetch over HTTP.
    Pfs(crate::origin::OriginHandle, Option<crate::http::HttpHandle>),
    /// tftpd-hpa or nginx.
    Process(std::process::Child),
}

impl Drop for OriginGuard {
    fn drop(&mut self) {
        if let OriginGuard::Process(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl OriginGuard {
    /// Starts `kind` in `site`'s `hq`, serving `origin_root` (`root` holds its scratch files).
    pub(super) fn start(
        kind: OriginKind,
        proto: OriginProto,
        site: &Site,
        root: &Path,
        origin_root: &Path,
    ) -> Result<OriginGuard, LabError> {
        match kind {
            OriginKind::Pfs => Self::pfs(proto, site, origin_root),
            OriginKind::Nginx => Self::nginx(site, root, origin_root),
            OriginKind::TftpdHpa => Self::tftpd_hpa(site, origin_root),
        }
    }

    /// The embedded origin, with its HTTP side for `OriginProto::Http`.
    fn pfs(proto: OriginProto, site: &Site, origin_root: &Path) -> Result<OriginGuard, LabError> {
        let root = origin_root.to_owned();
        let http_root = origin_root.to_owned();
        let h = site
            .hq
            .run(move || {
                crate::origin::spawn(crate::origin::OriginConfig {
                    root,
                    listen: (ORIGIN_ADDR, 69).into(),
                    max_sessions: 1024,
                    session: Default::default(),
                })
            })?
            .map_err(setup("pfs origin in hq"))?;
        let http = if proto == OriginProto::Http {
            Some(
                site.hq
                    .run(move || {
                        crate::http::spawn(crate::http::HttpConfig {
                            root: http_root,
                            listen: (ORIGIN_ADDR, HTTP_PORT).into(),
                            max_connections: 1024,
                        })
                    })?
                    .map_err(setup("pfs origin --http in hq"))?,
            )
        } else {
            None
        };
        Ok(OriginGuard::Pfs(h, http))
    }

    /// nginx serving the loads over HTTP, its prefix (config, logs, temp files) under `root`.
    fn nginx(site: &Site, root: &Path, origin_root: &Path) -> Result<OriginGuard, LabError> {
        let prefix = root.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).map_err(setup("nginx prefix"))?;
        let conf = format!(
            "daemon off;\nmaster_process off;\nerror_log {p}/logs/error.log;\n\
             pid {p}/nginx.pid;\nevents {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n sendfile on;\n\
             client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n\
             scgi_temp_path {p}/scgi;\n\
             server {{ listen {ORIGIN_ADDR}:{HTTP_PORT}; root {r}; autoindex off; }}\n}}\n",
            p = prefix.display(),
            r = origin_root.display()
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(setup("nginx.conf"))?;
        let os = std::ffi::OsStr::new;
        process_in_hq(
            site,
            &[
                os("nginx"),
                os("-p"),
                prefix.as_os_str(),
                os("-c"),
                conf_path.as_os_str(),
            ],
            "nginx (apt-get install nginx)",
        )
    }

    /// tftpd-hpa serving the loads over TFTP.
    fn tftpd_hpa(site: &Site, origin_root: &Path) -> Result<OriginGuard, LabError> {
        let address = format!("{ORIGIN_ADDR}:69");
        let os = std::ffi::OsStr::new;
        process_in_hq(
            site,
            &[
                os("in.tftpd"),
                os("--foreground"),
                os("--listen"),
                os("--address"),
                os(&address),
                os("--secure"),
                origin_root.as_os_str(),
            ],
            "in.tftpd (apt-get install tftpd-hpa)",
        )
    }

    /// Starts the embedded origin's peak counts again from what is open now.
    pub(super) fn reset_peaks(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if let OriginGuard::Pfs(h, http) = self {
            h.stats
                .peak_sessions
                .store(h.stats.active_sessions.load(Relaxed), Relaxed);
            if let Some(w) = http {
                w.stats
                    .peak_connections
                    .store(w.stats.active_connections.load(Relaxed), Relaxed);
            }
        }
    }

    /// The embedded origin's peak: TFTP transfers plus HTTP connections (one per transfer:
    /// phones ask `Connection: close`); `None` for tftpd-hpa and nginx, which do not say.
    pub(super) fn peak_sessions(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let OriginGuard::Pfs(h, http) = self else {
            return None;
        };
        let http_peak = http
            .as_ref()
            .map_or(0, |w| w.stats.peak_connections.load(Relaxed));
        Some((h.stats.peak_sessions.load(Relaxed) + http_peak) as u64)
    }
}

/// `argv` run in hq (`what` names it in an error), its output discarded, given 300 ms to
/// start listening.
fn process_in_hq(
    site: &Site,
    argv: &[&std::ffi::OsStr],
    what: &str,
) -> Result<OriginGuard, LabError> {
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", site.hq.name()])
        .args(argv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(setup(what))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(OriginGuard::Process(child))
}
