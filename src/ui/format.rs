//! Small text helpers shared by the panes: sizes, durations, width-aware truncation.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

pub fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let n = n as f64;
    if n >= GIB {
        format!("{:.1} GiB", n / GIB)
    } else {
        format!("{:.0} MiB", n / MIB)
    }
}

pub fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 600.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// Cuts `text` to at most `width` terminal columns (wide characters count 2), adding "…".
pub fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// First line of a prompt, newlines shown as "⏎".
pub fn one_line(text: &str) -> String {
    text.trim().replace('\n', " ⏎ ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_wide_characters_twice() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello world", 6), "hello…");
        assert_eq!(truncate("一只猫坐在窗台上", 7), "一只猫…");
        assert!(truncate("一只猫坐在窗台上", 7).width() <= 7);
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(secs(1.234), "1.23 s");
        assert_eq!(secs(42.0), "42.0 s");
        assert_eq!(secs(754.0), "12m34s");
    }
}
