//! The manifest as a hierarchy of its own (`SimConfig::manifest_over_lan`): its size among the
//! files, the phones' hierarchies at boot and once it arrives, and its WAN bytes apart.

use super::*;

/// Per file index, its size: the manifest first when it is shared over the LAN.
pub(super) fn sizes(cfg: &SimConfig) -> Vec<u64> {
    let manifest = cfg.manifest_over_lan.then_some(cfg.manifest_bytes);
    manifest
        .into_iter()
        .chain(cfg.file_sizes.iter().copied())
        .collect()
}

/// Per model, every hierarchy (id `model x files + file`).
pub(super) fn specs(cfg: &SimConfig, sizes: &[u64]) -> Vec<Vec<HierarchySpec>> {
    let files = sizes.len() as u32;
    (0..cfg.models)
        .map(|m| {
            (0..files)
                .map(|f| HierarchySpec {
                    id: m * files + f,
                    chunks: sizes[f as usize].div_ceil(u64::from(cfg.chunk_size)) as u32,
                })
                .collect()
        })
        .collect()
}

/// What a phone knows at power-on: only its manifest's hierarchy when the manifest comes
/// over the LAN, else (fetched before power-on) every file.
pub(super) fn at_boot<'a>(cfg: &SimConfig, specs: &'a [HierarchySpec]) -> &'a [HierarchySpec] {
    if cfg.manifest_over_lan {
        &specs[..1]
    } else {
        specs
    }
}

impl Sim {
    /// Whether `h` is a manifest's hierarchy.
    pub(super) fn is_manifest(&self, h: u32) -> bool {
        self.cfg.manifest_over_lan && (h as usize).is_multiple_of(self.files)
    }

    /// The origin admitted a transfer of `h`: counted (a manifest's apart).
    pub(super) fn session_opened(&mut self, h: u32) {
        self.origin_sessions += 1;
        self.report.origin_peak_sessions =
            self.report.origin_peak_sessions.max(self.origin_sessions);
        if self.is_manifest(h) {
            self.report.manifest_origin_fetches += 1;
        }
    }

    /// `bytes` of `h` left the origin: firmware or manifest.
    pub(super) fn count_wan(&mut self, h: u32, bytes: u64) {
        if self.is_manifest(h) {
            self.report.wan_manifest_bytes += bytes;
        } else {
            self.report.wan_bytes += bytes;
        }
    }

    /// `p` installed (verified) `h`: a manifest tells the phone its load's files, which start
    /// after the current actions (as the runtime queues them).
    pub(super) fn manifest_installed(&mut self, now: Time, p: u32, h: u32) {
        if !self.is_manifest(h) {
            return;
        }
        let m = (p % self.cfg.models) as usize;
        let later = self.specs[m][1..].to_vec();
        self.phones[p as usize].add_hierarchies(&later);
        self.push(
            now,
            SimEvent::Phone {
                to: p,
                ev: Event::Added,
            },
        );
    }
}
