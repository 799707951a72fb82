//! The origin side of a phone: TFTP and HTTP transfers (each on its own thread in the phone's namespace, fed back through a bounded channel), the list of origins tried in order, and the bytes they deliver.

use super::*;

/// Verifies chunk `index` and writes it to the partial file; `false` if it failed.
/// The body of one HTTP origin transfer: bytes from `offset` on, to the loop. A server that
/// ignores the range sends the file from its start; the bytes before `offset` are dropped here.
pub(super) fn http_origin_thread(
    place: Place,
    url: crate::http::HttpUrl,
    offset: u64,
    tx: crossbeam_channel::Sender<HttpMsg>,
    hung: std::sync::Weak<AtomicBool>,
) {
    let timeout = Duration::from_secs(10);
    let result = (|| -> Result<(), String> {
        let stream = place
            .run(|| std::net::TcpStream::connect_timeout(&url.addr, timeout))
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{url}: {e}"))?;
        let mut sink = |at: u64, data: &[u8]| -> Result<(), crate::http::HttpError> {
            hold_while_hung(&hung);
            let skip = offset.saturating_sub(at).min(data.len() as u64) as usize;
            if skip < data.len() {
                tx.send(HttpMsg::Data(data[skip..].to_vec()))
                    .map_err(|_| io::Error::other("transfer closed"))?;
            }
            Ok(())
        };
        crate::http::get_on(stream, &url, offset, timeout, &mut sink)
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(())
    })();
    let _ = tx.send(HttpMsg::Done(result));
}

/// The body of one TFTP origin transfer on its own thread: the file's bytes, block by block,
/// to the loop. Closing the transfer drops the receiver; the next block then ends the thread,
/// and its socket closes with it (the server's next send is refused, as when the loop closed
/// the socket itself).
pub(super) fn tftp_origin_thread(
    place: Place,
    server: SocketAddr,
    path: String,
    cfg: ClientConfig,
    tx: crossbeam_channel::Sender<HttpMsg>,
    hung: std::sync::Weak<AtomicBool>,
) {
    let closed = || FetchError::Loads {
        server,
        file: path.clone(),
        why: "transfer closed".into(),
    };
    let mut sink = |data: &[u8]| {
        hold_while_hung(&hung);
        tx.send(HttpMsg::Data(data.to_vec())).map_err(|_| closed())
    };
    let restarts = tx.clone();
    let mut restarted = |_, _| {
        let _ = restarts.send(HttpMsg::Restarted);
    };
    let result = place.run(|| fetch::transfer_with(server, &path, cfg, &mut sink, &mut restarted));
    let end = match result {
        Ok(Ok(_)) => HttpMsg::Done(Ok(())),
        Ok(Err(FetchError::Transfer { source, .. })) => HttpMsg::Failed(source),
        Ok(Err(e)) => HttpMsg::Done(Err(e.to_string())),
        Err(e) => HttpMsg::Done(Err(e.to_string())),
    };
    let _ = tx.send(end);
}

/// An origin thread of a hung phone stops where it is (before acknowledging the block it
/// holds, or reading on), so its socket goes unread as the rest of the phone's; it resumes
/// only when the phone is gone (its next hand-over then fails and the thread ends).
fn hold_while_hung(hung: &std::sync::Weak<AtomicBool>) {
    while hung.upgrade().is_some_and(|h| h.load(Ordering::Relaxed)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `origin_switches` reason of a TFTP transfer that fell back from a fragmented blksize
/// to the unfragmented one (its fragments never arrived, or stopped).
pub(crate) const SWITCH_BLKSIZE: &str = "tftp_fragmented_to_unfragmented";

impl FileReport {
    /// Counts a TFTP transfer's fallback to the unfragmented blksize under [`SWITCH_BLKSIZE`]
    /// (the transfer logged why).
    pub(crate) fn count_blksize_fallback(&mut self) {
        *self
            .origin_switches
            .entry(SWITCH_BLKSIZE.to_owned())
            .or_default() += 1;
    }
}

impl Peer {
    pub(super) fn origin_open(
        &mut self,
        now: Time,
        h: u32,
        fallback: bool,
    ) -> Result<(), PeerError> {
        let Source::Origin(url) = &self.opts.source else {
            // A served load is complete; the core never asks, but answer sanely.
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        };
        let urls = origin_urls(url);
        if urls.is_empty() {
            return Err(PeerError::Usage("no origin URL".into()));
        }
        let url = urls[self.files[h as usize].origin_pick % urls.len()].to_owned();
        self.files[h as usize].report.origin_transfers += 1;
        if url.starts_with("http://") {
            return self.origin_open_http(h, &url, fallback);
        }
        let (server, dir) = fetch::parse_base_url(&url)?;
        self.origin_close(h);
        let name = self.files[h as usize].entry.name.clone();
        let dir = dir.trim_end_matches('/');
        let path = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        if self.cfg.mode != Mode::Traditional {
            return self.origin_open_tftp_thread(h, server, path, fallback);
        }
        let (token, registered) = self.origin_socket();
        if let Err(e) = registered {
            // Out of descriptors or buffers: a failed transfer, retried after the back-off
            // like a busy origin, not the end of the run.
            let f = &mut self.files[h as usize];
            f.report.origin_errors += 1;
            warn!(file = %f.entry.name, "cannot open an origin socket: {e}");
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        }
        let mut session = ClientSession::new(self.opts.tftp.clone(), &path);
        let mut out = Vec::new();
        session.start(now, &mut out);
        info!(
            file = %name,
            "{} tftp://{server}/{path}",
            if fallback { "fallback fetch from" } else { "fetching from" }
        );
        self.files[h as usize].origin = Some(OriginXfer {
            http: None,
            token,
            server,
            tid: None,
            session,
            deadline: None,
            buf: Vec::with_capacity(self.files[h as usize].chunk_size as usize),
            index: 0,
        });
        self.origin_actions(now, h as usize, out)?;
        // The core streams once the transfer is open.
        self.pending.push_back(Event::OriginReady { h });
        Ok(())
    }

    /// An HTTP origin transfer: a thread per transfer (connected inside the phone's
    /// namespace) runs a blocking GET with `Range` from the verified prefix and hands the bytes
    /// to the loop through a bounded channel, which the loop drains every [`HTTP_POLL`]. Closing
    /// the transfer drops the receiver, and the thread ends at its next send.
    pub(super) fn origin_open_http(
        &mut self,
        h: u32,
        url: &str,
        fallback: bool,
    ) -> Result<(), PeerError> {
        self.origin_close(h);
        let i = h as usize;
        let name = self.files[i].entry.name.clone();
        let at = crate::http::HttpUrl::parse(url)?.join(&name);
        let verified = self.phone.hierarchies[i].verified.min(self.files[i].chunks);
        let cs = self.files[i].chunk_size;
        let offset = if verified >= self.files[i].chunks {
            self.files[i].entry.size
        } else {
            self.files[i].entry.chunk_range(cs, verified).0
        };
        let (tx, rx) = crossbeam_channel::bounded(HTTP_QUEUE);
        let place = self.place.clone();
        let thread_url = at.clone();
        let hung = Arc::downgrade(&self.hung);
        let spawned = std::thread::Builder::new()
            .name("pfs-http-origin".into())
            .spawn(move || http_origin_thread(place, thread_url, offset, tx, hung));
        if let Err(e) = spawned {
            let f = &mut self.files[i];
            f.report.origin_errors += 1;
            warn!(file = %name, "cannot start an HTTP origin transfer: {e}");
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        }
        info!(
            file = %name,
            "{} {at} from byte {offset}",
            if fallback { "fallback fetch from" } else { "fetching from" }
        );
        let token = self.token();
        self.files[i].origin = Some(OriginXfer {
            http: Some(rx),
            token,
            server: at.addr,
            tid: None,
            session: ClientSession::new(self.opts.tftp.clone(), &name),
            deadline: None,
            buf: Vec::with_capacity(cs as usize),
            index: verified,
        });
        self.pending.push_back(Event::OriginReady { h });
        Ok(())
    }

    /// A root's (or lease holder's) TFTP origin transfer on a thread of its own, inside the
    /// phone's namespace, handing blocks to the loop as the HTTP thread does. The transfer's
    /// acknowledgements then never wait for the loop: with the transfer in the loop, a turn of
    /// a second (1000 phones on a loaded 2-core host) left the WAN idle for that second, and
    /// at 400 phones the WAN ran at ~60% of its rate for whole seconds. At most one thread per
    /// origin transfer, and the protocol bounds those per site (roots + leases); the
    /// traditional mode (every phone fetching) keeps its transfers in the loop.
    pub(super) fn origin_open_tftp_thread(
        &mut self,
        h: u32,
        server: SocketAddr,
        path: String,
        fallback: bool,
    ) -> Result<(), PeerError> {
        let i = h as usize;
        let name = self.files[i].entry.name.clone();
        let (tx, rx) = crossbeam_channel::bounded(TFTP_QUEUE);
        let place = self.place.clone();
        let cfg = self.opts.tftp.clone();
        let thread_path = path.clone();
        let hung = Arc::downgrade(&self.hung);
        let spawned = std::thread::Builder::new()
            .name("pfs-tftp-origin".into())
            .spawn(move || tftp_origin_thread(place, server, thread_path, cfg, tx, hung));
        if let Err(e) = spawned {
            let f = &mut self.files[i];
            f.report.origin_errors += 1;
            warn!(file = %name, "cannot start an origin transfer: {e}");
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        }
        info!(
            file = %name,
            "{} tftp://{server}/{path}",
            if fallback { "fallback fetch from" } else { "fetching from" }
        );
        let token = self.token();
        self.files[i].origin = Some(OriginXfer {
            http: Some(rx),
            token,
            server,
            tid: None,
            session: ClientSession::new(self.opts.tftp.clone(), &name),
            deadline: None,
            buf: Vec::with_capacity(self.files[i].chunk_size as usize),
            // TFTP cannot seek: the file streams from its start, and the verified prefix is
            // skipped chunk by chunk.
            index: 0,
        });
        self.pending.push_back(Event::OriginReady { h });
        Ok(())
    }

    /// Bytes and ends of HTTP origin transfers, as their threads delivered them.
    pub(super) fn origin_http_poll(&mut self, now: Time) -> Result<(), PeerError> {
        for i in 0..self.files.len() {
            let mut budget = ORIGIN_POLL_BYTES;
            while budget > 0 {
                let Some(rx) = self.files[i].origin.as_ref().and_then(|o| o.http.as_ref()) else {
                    break;
                };
                let msg = match rx.try_recv() {
                    Ok(m) => m,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        HttpMsg::Done(Err("transfer thread ended".into()))
                    }
                };
                match msg {
                    HttpMsg::Data(data) => {
                        budget = budget.saturating_sub(data.len().max(1));
                        self.files[i].report.origin_bytes += data.len() as u64;
                        self.origin_bytes(now, i, &data)?;
                    }
                    HttpMsg::Restarted => self.fragments_dropped(i),
                    HttpMsg::Done(Ok(())) => {
                        self.origin_end(now, i)?;
                        self.origin_close(i as u32);
                    }
                    HttpMsg::Done(Err(e)) => {
                        let next = self.next_origin_scheme(i);
                        let f = &mut self.files[i];
                        f.origin_pick += 1;
                        match next {
                            // The list names another origin: the phone's own fallback (HTTP
                            // first, then TFTP), counted under its reason.
                            Some(scheme) => {
                                *f.report
                                    .origin_switches
                                    .entry(format!("http_to_{scheme}"))
                                    .or_default() += 1;
                                warn!(
                                    file = %f.entry.name,
                                    "origin transfer failed: {e}; falling back to {scheme}"
                                );
                            }
                            None => {
                                f.report.origin_errors += 1;
                                warn!(file = %f.entry.name, "origin transfer failed: {e}");
                            }
                        }
                        self.origin_close(i as u32);
                        self.feed(now, Event::OriginBusy { h: i as u32 })?;
                        break;
                    }
                    HttpMsg::Failed(e) => {
                        let f = &mut self.files[i];
                        match e {
                            ClientError::Server { .. } => f.report.origin_refused += 1,
                            ClientError::Timeout(_) => f.report.origin_timeouts += 1,
                            ClientError::Protocol(_) => f.report.origin_errors += 1,
                        }
                        f.origin_pick += 1;
                        warn!(file = %f.entry.name, "origin transfer failed: {e}");
                        self.origin_close(i as u32);
                        self.feed(now, Event::OriginBusy { h: i as u32 })?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The scheme (`tftp`, `http`) of the origin file `i` would move on to after a failure,
    /// when its origin list names another.
    pub(super) fn next_origin_scheme(&self, i: usize) -> Option<&'static str> {
        let Source::Origin(spec) = &self.opts.source else {
            return None;
        };
        let urls = origin_urls(spec);
        if urls.len() < 2 {
            return None;
        }
        let next = urls[(self.files[i].origin_pick + 1) % urls.len()];
        Some(if next.starts_with("http://") {
            "http"
        } else {
            "tftp"
        })
    }

    /// File `i`'s origin transfer fell back to unfragmented blocks: counted, and this phone's
    /// later transfers start unfragmented (the path drops fragments; each would otherwise
    /// lose the seconds the fallback takes).
    fn fragments_dropped(&mut self, i: usize) {
        self.files[i].report.count_blksize_fallback();
        if let Some(cfg) = self.opts.tftp.fallback() {
            info!(
                blksize = cfg.blksize,
                windowsize = cfg.windowsize,
                "fragments do not reach this phone: later origin transfers start unfragmented"
            );
            self.opts.tftp = cfg;
        }
    }

    /// A UDP socket in the phone's namespace, with room for a window, registered on the
    /// reactor under a new token; the registration's error, if any, for the caller to count.
    fn origin_socket(&mut self) -> (Token, io::Result<()>) {
        let sock = self
            .place
            .run(|| {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                fetch::grow_receive_buffer(&s);
                Ok::<_, io::Error>(s)
            })
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r);
        let token = self.token();
        let registered = sock.and_then(|s| self.reactor.borrow_mut().udp(token, s));
        (token, registered)
    }

    /// A fresh socket (transfer id) for the in-loop origin transfer `i`, which starts over:
    /// datagrams of the old transfer then cannot reach its session.
    fn origin_new_tid(&mut self, now: Time, i: usize) -> Result<(), PeerError> {
        let (token, registered) = self.origin_socket();
        let Some(o) = self.files[i].origin.as_mut() else {
            return Ok(());
        };
        let old = std::mem::replace(&mut o.token, token);
        o.tid = None;
        self.reactor.borrow_mut().close(old);
        if let Err(e) = registered {
            let f = &mut self.files[i];
            f.report.origin_errors += 1;
            warn!(file = %f.entry.name, "cannot open an origin socket: {e}");
            self.origin_close(i as u32);
            self.feed(now, Event::OriginBusy { h: i as u32 })?;
        }
        Ok(())
    }

    pub(super) fn origin_close(&mut self, h: u32) {
        if let Some(o) = self.files[h as usize].origin.take() {
            self.reactor.borrow_mut().close(o.token);
        }
    }

    pub(super) fn origin_timers(&mut self, now: Time) -> Result<(), PeerError> {
        for i in 0..self.files.len() {
            let due = self.files[i]
                .origin
                .as_ref()
                .is_some_and(|o| o.deadline.is_some_and(|d| d <= now));
            if due {
                let mut out = Vec::new();
                let o = self.files[i].origin.as_mut().expect("checked");
                o.deadline = None;
                o.session.on_timer(now, &mut out);
                self.origin_actions(now, i, out)?;
            }
        }
        Ok(())
    }

    pub(super) fn origin_datagram(
        &mut self,
        now: Time,
        sock: Token,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), PeerError> {
        let Some(i) = self
            .files
            .iter()
            .position(|f| f.origin.as_ref().is_some_and(|o| o.token == sock))
        else {
            return Ok(());
        };
        let o = self.files[i].origin.as_mut().expect("found");
        // The server answers from a new port (its transfer id); lock onto it.
        if from.ip() != o.server.ip() {
            return Ok(());
        }
        let tid = *o.tid.get_or_insert(from);
        if from != tid {
            // A second transfer the server started for a retransmitted RRQ: stop it (RFC
            // 1350), or it sends the whole file again over the WAN.
            let token = o.token;
            let stop =
                tftp::packet::error(tftp::ErrorCode::UnknownTransferId, "unknown transfer id");
            let _ = self.reactor.borrow_mut().send_to(token, from, &stop);
            return Ok(());
        }
        let mut out = Vec::new();
        o.session.on_datagram(now, bytes, &mut out);
        self.origin_actions(now, i, out)
    }

    pub(super) fn origin_actions(
        &mut self,
        now: Time,
        i: usize,
        mut out: Vec<ClientAction>,
    ) -> Result<(), PeerError> {
        // Datagrams first: the bytes of the last block complete the file, and the core then
        // closes the transfer, which would swallow the final ACK queued behind them and leave
        // the server retransmitting into a closed port.
        // A restart stays between the ERROR to the old transfer and the new request.
        out.sort_by_key(|a| !matches!(a, ClientAction::Send(_) | ClientAction::Restart { .. }));
        for a in out {
            let Some(o) = self.files[i].origin.as_mut() else {
                return Ok(());
            };
            match a {
                ClientAction::Send(bytes) => {
                    let to = o.tid.unwrap_or(o.server);
                    let token = o.token;
                    let _ = self.reactor.borrow_mut().send_to(token, to, &bytes);
                }
                ClientAction::Timer(at) => o.deadline = Some(at),
                ClientAction::Restart { blksize, why } => {
                    warn!(file = %self.files[i].entry.name, blksize, "origin transfer: {why}; starting over unfragmented");
                    self.fragments_dropped(i);
                    self.origin_new_tid(now, i)?;
                }
                ClientAction::Size(n) => {
                    if n != self.files[i].entry.size && !self.files[i].is_manifest {
                        warn!(file = %self.files[i].entry.name, "origin announces {n} bytes, the manifest {}", self.files[i].entry.size);
                    }
                }
                ClientAction::Write { data, .. } => {
                    self.files[i].report.origin_bytes += data.len() as u64;
                    self.origin_bytes(now, i, &data)?;
                }
                ClientAction::Done(Ok(_)) => {
                    // Completes an empty last chunk (an empty file), then ends the transfer.
                    self.origin_end(now, i)?;
                    self.origin_close(i as u32);
                }
                ClientAction::Done(Err(e)) => {
                    let r = &mut self.files[i].report;
                    match e {
                        ClientError::Server { .. } => r.origin_refused += 1,
                        ClientError::Timeout(_) => r.origin_timeouts += 1,
                        ClientError::Protocol(_) => r.origin_errors += 1,
                    }
                    warn!(file = %self.files[i].entry.name, "origin transfer failed: {e}");
                    self.files[i].origin_pick += 1;
                    self.origin_close(i as u32);
                    self.feed(now, Event::OriginBusy { h: i as u32 })?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// File bytes from the origin, in order: cut into chunks, verify, store, tell the core.
    pub(super) fn origin_bytes(
        &mut self,
        now: Time,
        i: usize,
        mut data: &[u8],
    ) -> Result<(), PeerError> {
        if self.files[i].is_manifest {
            self.manifest_origin_bytes(i, data);
            return Ok(());
        }
        let cs = self.files[i].chunk_size;
        loop {
            let f = &mut self.files[i];
            let Some(o) = f.origin.as_mut() else {
                return Ok(());
            };
            if o.index >= f.chunks {
                return Ok(()); // more bytes than the manifest says: ignored
            }
            let (start, end) = f.entry.chunk_range(cs, o.index);
            let want = (end - start) as usize;
            let take = (want - o.buf.len()).min(data.len());
            o.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if o.buf.len() < want {
                return Ok(()); // all bytes consumed, chunk incomplete
            }
            let index = o.index;
            o.index += 1;
            let mut chunk = std::mem::take(&mut o.buf);
            // A reopened transfer re-reads the verified prefix: not written again, but told
            // to the core like every chunk (as the simulator does), since it shows the transfer
            // alive. Withheld, a prefix that took longer than `origin_timeout` to re-read
            // looked like a dead transfer: reopened from the start every 10 s, it never got
            // past the prefix (a fallback holding its lease for minutes in `pfs lab`).
            let ok = if index >= self.phone.hierarchies[i].verified {
                let ok = f.installed || write_verified(f, index, &chunk)?;
                if !ok {
                    f.report.corrupt_chunks += 1;
                    warn!(file = %f.entry.name, chunk = index, "origin chunk failed verification");
                }
                ok
            } else {
                f.entry.chunk_ok(index, &chunk)
            };
            let ev = Event::OriginChunk {
                h: i as u32,
                index,
                ok,
            };
            self.feed(now, ev)?;
            chunk.clear();
            if let Some(o) = self.files[i].origin.as_mut() {
                o.buf = chunk;
            }
        }
    }
}
