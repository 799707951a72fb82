//! Progress bars and the log lines written above them.

/// The progress bars on screen, if any: log lines are written above them, each on its own line,
/// instead of into the middle of a bar.
pub(super) static BARS: std::sync::Mutex<Option<indicatif::MultiProgress>> =
    std::sync::Mutex::new(None);

/// One log event's text, written to stderr whole when the event is done.
#[derive(Default)]
pub(super) struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        use std::io::Write as _;
        let line = std::mem::take(&mut self.0);
        let put = || {
            let _ = std::io::stderr().lock().write_all(&line);
        };
        match BARS.lock().ok().as_deref().and_then(Option::as_ref) {
            Some(bars) => bars.suspend(put),
            None => put(),
        }
    }
}

/// Live bars, one per (model, file): bytes verified summed over every phone of the model
/// (the total is the file's size times those phones); and the installed count with roles.
/// Drawn by a thread.
pub(super) struct ProgressBars {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    drawer: std::thread::JoinHandle<()>,
}

impl ProgressBars {
    pub(super) fn start(
        p: std::sync::Arc<pfs::fleet::Progress>,
        phones: u64,
        label: String,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>40} [{bar:30}] {bytes:>10}/{total_bytes:<10} verified on all phones {bytes_per_sec}",
        )
        .expect("template")
        .progress_chars("=> ");
        let files: Vec<indicatif::ProgressBar> = p
            .files
            .iter()
            .map(|(m, f, total, _)| {
                let b = multi.add(indicatif::ProgressBar::new(*total));
                b.set_style(style.clone());
                b.set_prefix(format!("{m} {f}"));
                b
            })
            .collect();
        let all = multi.add(indicatif::ProgressBar::new(phones));
        all.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>40} [{bar:30}] {pos}/{len} phones  {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        all.set_prefix(label);
        if let Ok(mut b) = BARS.lock() {
            *b = Some(multi.clone());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        let drawer = std::thread::spawn(move || {
            loop {
                for (b, f) in files.iter().zip(&p.files) {
                    b.set_position(f.3.load(Ordering::Relaxed));
                }
                all.set_position(p.installed.load(Ordering::Relaxed));
                all.set_message(format!(
                    "roots {} parents {} children {} fallbacks {}",
                    p.roots.load(Ordering::Relaxed),
                    p.parents.load(Ordering::Relaxed),
                    p.children.load(Ordering::Relaxed),
                    p.fallbacks.load(Ordering::Relaxed)
                ));
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            for b in &files {
                b.finish();
            }
            all.finish();
            drop(multi);
        });
        ProgressBars { stop, drawer }
    }

    pub(super) fn finish(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.drawer.join();
        if let Ok(mut b) = BARS.lock() {
            *b = None;
        }
    }
}
