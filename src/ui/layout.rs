//! Where each pane goes: two columns of three panes below 120 columns, three columns of two
//! above. `None` below the minimum size.

use ratatui::layout::{Constraint, Layout, Rect};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// From this width on, three columns.
pub const WIDE: u16 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaneAreas {
    pub header: Rect,
    pub queue: Rect,
    pub editor: Rect,
    pub progress: Rect,
    pub gpu: Rect,
    pub preview: Rect,
    pub log: Rect,
    /// Two lines: message or one-line input, then key hints.
    pub footer: Rect,
}

/// Header line, body, two footer lines; `None` below the minimum size.
pub fn frame_parts(area: Rect) -> Option<[Rect; 3]> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    Some(Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(2)]).areas(area))
}

pub fn split(area: Rect) -> Option<PaneAreas> {
    let [header, body, footer] = frame_parts(area)?;
    let (queue, editor, progress, gpu, preview, log);
    if area.width >= WIDE {
        let [left, middle, right] = Layout::horizontal([
            Constraint::Percentage(32),
            Constraint::Percentage(36),
            Constraint::Percentage(32),
        ])
        .areas(body);
        [queue, log] = Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(left);
        [editor, progress] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(middle);
        [preview, gpu] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(right);
    } else {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        [queue, editor, log] = Layout::vertical([
            Constraint::Percentage(38),
            Constraint::Percentage(34),
            Constraint::Percentage(28),
        ])
        .areas(left);
        [progress, gpu, preview] = Layout::vertical([
            Constraint::Percentage(36),
            Constraint::Percentage(30),
            Constraint::Percentage(34),
        ])
        .areas(right);
    }
    Some(PaneAreas {
        header,
        queue,
        editor,
        progress,
        gpu,
        preview,
        log,
        footer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_fit_inside_the_screen_and_do_not_overlap() {
        for (w, h) in [(80, 24), (100, 30), (119, 40), (120, 40), (160, 48), (300, 100)] {
            let area = Rect::new(0, 0, w, h);
            let a = split(area).unwrap();
            let panes = [
                a.header, a.queue, a.editor, a.progress, a.gpu, a.preview, a.log, a.footer,
            ];
            for (i, p) in panes.iter().enumerate() {
                assert!(
                    area.contains(p.as_position()) && p.right() <= w && p.bottom() <= h,
                    "{w}x{h}: {p:?}"
                );
                assert!(
                    p.width >= 3 && p.height >= 1,
                    "{w}x{h}: pane {i} too small: {p:?}"
                );
                for q in &panes[i + 1..] {
                    assert!(!p.intersects(*q), "{w}x{h}: {p:?} overlaps {q:?}");
                }
            }
        }
    }

    #[test]
    fn below_the_minimum_there_is_no_layout() {
        assert!(split(Rect::new(0, 0, 79, 24)).is_none());
        assert!(split(Rect::new(0, 0, 80, 23)).is_none());
    }
}
