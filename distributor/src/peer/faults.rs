//! Faults the lab injects into a running phone (crash, freeze, cut, slow port, corrupt relay, liar): real process and socket behaviour, not a model.

use super::*;

/// A fault injected into a phone of the lab (see `crate::faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Every socket closed by the kernel (FIN, or RST with unread data); the phone stopped.
    Crashed,
    /// Hung: sockets stay open, nothing is processed (peers see silence on live streams).
    Frozen,
    /// Its link is down in its namespace (half-open streams, no RST); it keeps running.
    Cut,
    /// A cut link came back up.
    Restored,
}

impl Peer {
    /// The phone's link rate as it would read it from its port (a phone on a slow port of
    /// the lab is told, as a real one negotiates it): below `leaf_below_kbit` it only ever
    /// becomes a leaf.
    pub fn set_link_kbit(&mut self, kbit: u32) {
        self.phone.link_kbit = kbit;
    }

    /// Fault injection: relay chunks with flipped bytes (a broken or hostile peer).
    pub fn set_corrupt(&mut self) {
        self.phone.corrupt = true;
    }

    /// Fault injection: a hostile phone that claims root of every file with the strongest
    /// adverts, accepts every child and feeds it nothing or a trickle (before boot).
    pub fn set_liar(&mut self, kind: crate::phone::Liar) {
        self.phone.liar = Some(kind);
    }

    pub fn liar(&self) -> Option<crate::phone::Liar> {
        self.phone.liar
    }

    /// Every socket the phone holds: its streams, origin transfers, election sockets and
    /// listener.
    pub(super) fn socket_tokens(&self) -> Vec<Token> {
        let mut tokens: Vec<Token> = self.conns.keys().copied().collect();
        tokens.extend(
            self.files
                .iter()
                .filter_map(|f| f.origin.as_ref().map(|o| o.token)),
        );
        tokens.extend([
            self.base | UDP_TOKEN,
            self.base | ADVERT_TOKEN,
            self.base | LISTEN_TOKEN,
        ]);
        tokens
    }

    /// Fault injection: the phone dies. Its sockets are closed at once (the kernel sends FIN,
    /// or RST where unread data remains), without polling the shared reactor.
    pub fn crash(&mut self) {
        let tokens = self.socket_tokens();
        for f in &mut self.files {
            f.origin = None;
        }
        let mut r = self.reactor.borrow_mut();
        for t in tokens {
            r.close(t);
        }
        self.conns.clear();
        self.to_parent.clear();
        self.from_child.clear();
        self.inbox = Inbox::default();
        self.fault = Fault::Crashed;
    }

    /// Fault injection: the phone hangs; its sockets stay open and are no longer read (the
    /// reactor stops posting receives for them). As in a hung process, what arrives stays in
    /// the kernel: a stream's receive window closes, and a parent sending into it gets no
    /// acknowledgement until its `TCP_USER_TIMEOUT` aborts the stream (zero-window probes
    /// count, Linux >= 5.1); datagrams pile up in the election sockets, then are dropped;
    /// connections wait in the listener's backlog. Its origin transfer threads stop too.
    pub fn freeze(&mut self) {
        let tokens = self.socket_tokens();
        let mut r = self.reactor.borrow_mut();
        for t in tokens {
            r.freeze(t);
        }
        drop(r);
        self.hung.store(true, Ordering::Relaxed);
        // What the inbox holds (streams accepted, bytes read) stays there unprocessed: kept,
        // not closed.
        self.fault = Fault::Frozen;
    }

    /// Its sockets (streams, election sockets) in which the kernel holds unread data: a
    /// frozen phone's fill up, as a hung process's do.
    pub fn unread_sockets(&self) -> u64 {
        let r = self.reactor.borrow();
        self.conns
            .keys()
            .copied()
            .chain([self.base | UDP_TOKEN, self.base | ADVERT_TOKEN])
            .filter(|&t| r.unread(t) > 0)
            .count() as u64
    }

    /// Fault injection: the phone's link goes down in its namespace (no RST).
    pub fn cut(&mut self) {
        if let Some(ns) = self.netns() {
            crate::faults::link_down(ns);
        }
        self.fault = Fault::Cut;
    }

    /// The cut link is back (the caller brought it up).
    pub fn uncut(&mut self) {
        self.fault = Fault::Restored;
    }
}
