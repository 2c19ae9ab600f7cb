//! The colours the panes use. Built from the app theme (`crate::theme`) at the edge; the
//! default is the dark theme, also used by the snapshot tests.

use ratatui::style::Color;

#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    pub text: Color,
    pub dim: Color,
    pub accent: Color,
    pub border: Color,
    pub selection_fg: Color,
    pub selection_bg: Color,
    pub ok: Color,
    pub warn: Color,
    pub error: Color,
    pub gauge: Color,
    pub sparkline: Color,
}

impl Default for Palette {
    fn default() -> Self {
        Self {
            text: Color::Reset,
            dim: Color::DarkGray,
            accent: Color::Cyan,
            border: Color::Gray,
            selection_fg: Color::Black,
            selection_bg: Color::Cyan,
            ok: Color::Green,
            warn: Color::Yellow,
            error: Color::Red,
            gauge: Color::Blue,
            sparkline: Color::Magenta,
        }
    }
}
