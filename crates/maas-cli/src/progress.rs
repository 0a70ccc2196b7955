//! Progress for transfers: one indicatif bar per file (bytes, rate, ETA) on stderr, hidden
//! when stderr is not a terminal or the output is JSON; plus the human-readable sizes and
//! notes the transfer commands print.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Output;

/// About 75 columns before the file name, which gets what is left of the line (truncated).
const BAR_TEMPLATE: &str = "{prefix:>9.bold} [{bar:20.cyan/blue}] {binary_bytes:>10}/{binary_total_bytes:<10} \
     {binary_bytes_per_sec:>12} ETA {eta:>3} {wide_msg}";

/// Where progress and notes go for one command.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    bars: bool,
    notes: bool,
}

impl Progress {
    /// Bars only on an interactive stderr in text mode; notes in text mode.
    pub fn new(out: Output) -> Self {
        let text = out == Output::Text;
        Self { bars: text && std::io::stderr().is_terminal(), notes: text }
    }

    /// A byte-counting bar for `len` bytes: `verb` on the left (e.g. "uploading"), `what` after it.
    pub fn bytes(&self, verb: &'static str, what: &str, len: u64) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(verb)
            .with_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A line for people (stderr, text mode only); printed above any bar that is drawn.
    pub fn note(&self, line: &str) {
        if self.notes {
            eprintln!("{line}");
        }
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
