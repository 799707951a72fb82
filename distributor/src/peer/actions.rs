//! Carrying out the core's actions (the driving contract's "same meaning for every action"), and installing a verified file.

use super::*;

impl Peer {
    pub(super) fn apply(&mut self, now: Time, a: Action) -> Result<(), PeerError> {
        match a {
            Action::Broadcast(msg) => {
                if let Msg::Advert { h, claim, .. } = msg {
                    let f = &self.files[h as usize];
                    debug!(
                        "XID{:08X} TxBdcst {} {} strength {:#x}",
                        claim.xid,
                        tier_name(claim.tier),
                        f.entry.name,
                        claim.strength
                    );
                }
                self.send_udp(SocketAddrV4::new(self.bcast, self.opts.port), msg);
            }
            Action::Send { to, msg } => self.send(now, to, msg)?,
            Action::OriginOpen { h, fallback } => self.origin_open(now, h, fallback)?,
            Action::OriginClose { h } => self.origin_close(h),
            Action::Timer { h, kind, at } => {
                let code = kind_code(kind);
                if let Some(old) = self.armed.insert((h, code), at) {
                    self.timers.remove(&(old, h, code));
                }
                self.timers.insert((at, h, code), kind);
            }
            Action::Install { h } if self.files[h as usize].is_manifest => {
                self.manifest_installed(h as usize)?
            }
            Action::Install { h } => self.install(h)?,
            Action::Fallback { h, reason } => {
                let f = &mut self.files[h as usize];
                f.report.fallbacks += 1;
                f.report.fallback_reasons.push(reason);
                warn!(file = %f.entry.name, "falling back to the origin: {}", match reason {
                    FallbackReason::NoPeer => "no usable parent; the root granted a lease",
                });
            }
            Action::BecameRoot { h, xid, serving } => {
                let f = &mut self.files[h as usize];
                f.report.became_root = true;
                info!(
                    "XID{xid:08X} root of {}: {}",
                    f.entry.name,
                    if serving {
                        "serving from the store"
                    } else {
                        "fetching from the origin"
                    }
                );
            }
            Action::RootLost {
                h,
                silent,
                corrupt,
                stalled,
            } => {
                let f = &mut self.files[h as usize];
                f.report.roots_lost += 1;
                if corrupt {
                    f.report.roots_rejected_corrupt += 1;
                    warn!(file = %f.entry.name, "the root sent a corrupt chunk: re-electing without it");
                } else if stalled {
                    f.report.roots_rejected_stalled += 1;
                    warn!(
                        file = %f.entry.name,
                        "the root, our parent, fed us nothing it claims to hold for {:.1} s: re-electing without it",
                        silent as f64 / 1e6
                    );
                } else {
                    info!(
                        file = %f.entry.name,
                        "root silent and no data for {:.1} s: re-electing",
                        silent as f64 / 1e6
                    );
                }
            }
            Action::ConfirmedRoot { h, xid } => {
                let f = &mut self.files[h as usize];
                f.report.confirmed_root = true;
                f.report.confirmed_root_s = Some(self.start.elapsed().as_secs_f64());
                info!(
                    "@@@HROOT: {} XID{xid:08X} model {} confirmed root",
                    f.entry.name, self.opts.model
                );
            }
        }
        Ok(())
    }

    pub(super) fn install(&mut self, h: u32) -> Result<(), PeerError> {
        let f = &mut self.files[h as usize];
        if let Some(p) = f.partial.take() {
            let path = p.install()?;
            debug!("installed {}", path.display());
        }
        f.installed = true;
        f.report.installed_s = Some(self.start.elapsed().as_secs_f64());
        info!(file = %f.entry.name, "100% {} KB, verified and installed", f.entry.size / 1024);
        if self.installed() && !self.activated {
            self.activate()?;
        }
        Ok(())
    }

    pub(super) fn activate(&mut self) -> Result<(), PeerError> {
        if let (Source::Origin(_), Some(m)) = (&self.opts.source, &self.manifest) {
            self.store.activate_verified(m)?;
            info!(load = %m.load, "load verified and activated");
        }
        self.activated = true;
        self.installed_at = Some(Instant::now());
        Ok(())
    }
}
