//! Many phones on one engine thread ([`Host`]), and what a phone shows of itself (progress, metrics).

use super::*;

/// Polls of the completion phase of one turn (see [`Host::run`]), and its time bound.
const MAX_DRAIN_POLLS: usize = 64;
const MAX_DRAIN: Duration = Duration::from_millis(250);

/// One core's reactor and the phones it drives (thread-per-core: a host never leaves its
/// thread, and phones never move between hosts).
pub struct Host {
    reactor: SharedReactor,
    pub peers: Vec<Peer>,
    /// The longest turn (timers, completions, processing) so far: how late a phone on this
    /// host can hear its network.
    pub max_turn: Duration,
    /// Turns run, and how many took longer than 10 ms (a phone on this host heard its
    /// network that late).
    pub turns: u64,
    pub long_turns: u64,
}

impl Host {
    pub fn new(backend: Backend, limits: Limits) -> Result<Host, PeerError> {
        let r = engine::open(backend, limits).map_err(io_err(format!("engine {backend:?}")))?;
        Ok(Host::with_reactor(Rc::new(RefCell::new(r))))
    }

    pub(super) fn with_reactor(reactor: SharedReactor) -> Host {
        Host {
            reactor,
            peers: Vec::new(),
            max_turn: Duration::ZERO,
            turns: 0,
            long_turns: 0,
        }
    }

    /// Adds a prepared phone to this host.
    pub fn add(
        &mut self,
        opts: PeerOptions,
        prepared: Prepared,
        place: Place,
    ) -> Result<(), PeerError> {
        let slot = self.peers.len() as u64 + 1;
        let p = Peer::start(opts, prepared, self.reactor.clone(), slot, place)?;
        self.peers.push(p);
        Ok(())
    }

    /// Drives every phone until `done` says so (checked every turn) or a signal.
    ///
    /// A turn: completions first (polled without waiting, again while more keep arriving, up
    /// to a bound), then due timers, then a wait for the next completion or deadline. A timer
    /// due at `t` thus never fires before a datagram that arrived before `t` and is already
    /// queued: firing claim guards ahead of the adverts that would suppress them made hundreds
    /// of roots at 400 phones.
    pub fn run(&mut self, mut done: impl FnMut(&mut [Peer]) -> bool) -> Result<(), PeerError> {
        let mut waited = true;
        loop {
            let turn_start = Instant::now();
            // Completions already queued (after a wait, the wait's own batch is in the
            // inboxes): handle them before any timer. Until a poll finds nothing, bounded:
            // the kernel hands a busy socket's multishot receive at most 32 datagrams per
            // pass, so a root whose socket held 1000 Joins took 8 turns (3 s of 0.4 s turns
            // at 1000 lab phones) to reach the adverts queued behind them, and presumed the
            // other roots dead. With 8 polls a turn it had 4 passes; now up to 32.
            let drain_start = Instant::now();
            for _ in 0..MAX_DRAIN_POLLS {
                let got = self.poll_once(Duration::ZERO)?;
                self.process_all()?;
                if (got == 0 && !waited) || drain_start.elapsed() > MAX_DRAIN {
                    break;
                }
                waited = false;
            }
            let mut next = Instant::now() + Duration::from_millis(200);
            let t_tick = Instant::now();
            for p in &mut self.peers {
                if p.stopped() {
                    continue;
                }
                let _in = p.span.clone().entered();
                next = next.min(p.tick()?);
            }
            let now = Instant::now();
            if now - turn_start > Duration::from_millis(100) {
                tracing::info!(
                    target: "pfs::turns",
                    "slow turn: {:?} (completions {:?}, timers {:?})",
                    now - turn_start,
                    t_tick - turn_start,
                    now - t_tick
                );
            }
            let turn = now - turn_start;
            self.max_turn = self.max_turn.max(turn);
            self.turns += 1;
            if turn > Duration::from_millis(10) {
                self.long_turns += 1;
            }
            if done(&mut self.peers) || stop_requested() {
                return Ok(());
            }
            let wait = next
                .saturating_duration_since(now)
                .clamp(Duration::from_micros(500), Duration::from_millis(200));
            self.poll_once(wait)?;
            waited = true;
        }
    }

    /// One poll of the reactor, routing completions into the phones' inboxes; how many.
    pub(super) fn poll_once(&mut self, wait: Duration) -> Result<usize, PeerError> {
        let peers = &mut self.peers;
        let mut got = 0;
        self.reactor
            .borrow_mut()
            .poll(Some(wait), &mut |c| {
                got += 1;
                let token = match &c {
                    Completion::Accepted { listener, .. } => *listener,
                    Completion::Connected { conn, .. }
                    | Completion::Data { conn, .. }
                    | Completion::Closed { conn, .. }
                    | Completion::Sent { conn, .. } => *conn,
                    Completion::Datagram { sock, .. } => *sock,
                };
                let slot = (token >> PHONE_SHIFT) as usize;
                if let Some(p) = slot.checked_sub(1).and_then(|i| peers.get_mut(i))
                    && !p.stopped()
                {
                    let _in = p.span.clone().entered();
                    p.route(c);
                }
            })
            .map_err(io_err("engine poll"))?;
        Ok(got)
    }

    pub(super) fn process_all(&mut self) -> Result<(), PeerError> {
        for p in &mut self.peers {
            if p.stopped() {
                continue;
            }
            let _in = p.span.clone().entered();
            p.process()?;
        }
        Ok(())
    }

    /// The latest any phone's timer fired after its deadline.
    pub fn timer_late_max(&self) -> Duration {
        Duration::from_micros(
            self.peers
                .iter()
                .map(|p| p.timer_late_max)
                .max()
                .unwrap_or(0),
        )
    }

    /// This core's engine counters.
    pub fn engine_stats(&self) -> EngineStats {
        self.reactor.borrow().stats()
    }

    pub fn reports(&self) -> Vec<PeerReport> {
        self.peers.iter().map(Peer::report).collect()
    }

    /// Closes every phone's sockets.
    pub fn close(&mut self) {
        for p in &mut self.peers {
            p.close_all();
        }
    }
}

/// A phone's progress for a live display.
pub struct PeerProgress<'a> {
    pub model: &'a str,
    /// (file, verified bytes)
    pub files: Vec<(&'a str, u64)>,
    pub roots: u64,
    pub parents: u64,
    pub children: u64,
    pub fallbacks: u64,
}

impl Peer {
    pub fn progress(&self) -> PeerProgress<'_> {
        let mut p = PeerProgress {
            model: &self.opts.model,
            files: Vec::with_capacity(self.files.len()),
            roots: 0,
            parents: 0,
            children: 0,
            fallbacks: 0,
        };
        for (f, x) in self.files.iter().zip(&self.phone.hierarchies) {
            if f.is_manifest {
                continue; // not a file of the load (the live display shows the load's)
            }
            let cs = u64::from(f.chunk_size);
            p.files.push((
                &f.entry.name,
                (u64::from(x.verified) * cs).min(f.entry.size),
            ));
            p.roots += u64::from(x.role == Role::Root);
            p.parents += u64::from(x.children().next().is_some());
            p.children += u64::from(x.role == Role::Member && x.parent.is_some());
            p.fallbacks += u64::from(f.report.fallbacks);
        }
        p
    }

    /// What `--metrics` shows of this phone now.
    pub fn metrics_sample(&self) -> crate::metrics::PhoneSample {
        let files = self
            .files
            .iter()
            .zip(&self.phone.hierarchies)
            .map(|(f, x)| {
                let name = |r: &crate::phone::FallbackReason| {
                    serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                };
                // Every reason from the start (at 0), so the series exists before it moves.
                let mut fallbacks =
                    BTreeMap::from([(name(&crate::phone::FallbackReason::NoPeer), 0)]);
                for r in &f.report.fallback_reasons {
                    *fallbacks.entry(name(r)).or_default() += 1;
                }
                crate::metrics::FileSample {
                    file: f.entry.name.clone(),
                    role: role_name(x.role),
                    origin_bytes: f.report.origin_bytes,
                    peer_bytes: f.report.peer_bytes,
                    chunks_verified: u64::from(x.verified),
                    chunks_rejected: f.report.corrupt_chunks,
                    children: x.children().count() as u64,
                    fallbacks,
                }
            })
            .collect();
        crate::metrics::PhoneSample {
            model: self.opts.model.clone(),
            installed: self.installed(),
            files,
            engine: self.reactor.borrow().stats(),
            messages_sent: self
                .sent
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            udp: self.udp,
        }
    }
}

impl Peer {
    pub fn report(&self) -> PeerReport {
        let files = self
            .files
            .iter()
            .zip(&self.phone.hierarchies)
            .map(|(f, x)| {
                let mut r = f.report.clone();
                r.role = role_name(x.role).to_owned();
                r
            })
            .collect();
        PeerReport {
            peer: self.me,
            model: self.opts.model.clone(),
            load: self
                .manifest
                .as_ref()
                .map_or_else(String::new, |m| m.load.clone()),
            mode: self.opts.mode,
            installed: self.installed(),
            seconds: self.start.elapsed().as_secs_f64(),
            files,
            engine: self.reactor.borrow().stats(),
            udp_received: self.udp[0],
            udp_undecodable: self.udp[1],
            udp_foreign: self.udp[2],
            xdp: None,
            messages_sent: self
                .sent
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        }
    }

    /// Logs progress every 10% per file.
    pub(super) fn log_progress(&mut self) {
        for (f, x) in self.files.iter_mut().zip(&self.phone.hierarchies) {
            let pct = (x.verified * 100).checked_div(f.chunks).unwrap_or(100);
            if pct >= f.next_progress && pct < 100 {
                info!(file = %f.entry.name, "{pct}% {} KB", u64::from(x.verified) * u64::from(f.chunk_size) / 1024);
                f.next_progress = pct / 10 * 10 + 10;
            }
        }
    }
}
