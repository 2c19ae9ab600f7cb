//! The preview pane: the latest latent preview while a job runs, the finished image after. Drawn
//! here with half-block characters (two pixels per cell, works in every terminal, tmux and SSH);
//! the event loop may then paint the finished image over it with a graphics protocol.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget};
use ratatui::Frame;

use super::{pane_block, Palette};
use crate::app::state::{AppState, Pane};
use crate::model::RgbImage;

/// Draws the pane; returns the image area when a finished image is shown (for graphics overlay).
pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) -> Option<Rect> {
    let block = pane_block(state, Pane::Preview, palette);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(preview) = &state.preview else {
        let text = Line::styled("No image yet.", Style::default().fg(palette.dim));
        frame.render_widget(Paragraph::new(text), inner);
        return None;
    };
    let [image_area, caption] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let image = &preview.image;
    let caption_text = match preview.step {
        Some(step) => format!("job #{} · step {step} (latent preview)", preview.job),
        None => format!("job #{} · {}×{}", preview.job, image.width, image.height),
    };
    frame.render_widget(
        Paragraph::new(Line::styled(caption_text, Style::default().fg(palette.dim))).centered(),
        caption,
    );
    let fitted = fit(image.width, image.height, image_area);
    frame.render_widget(HalfBlocks { image }, fitted);
    preview.step.is_none().then_some(fitted)
}

/// The largest rect inside `area`, centred, with the image's aspect ratio (a cell is two pixels
/// tall in half-block rendering, so cells are treated as square pixels 1×2).
pub fn fit(width: u32, height: u32, area: Rect) -> Rect {
    if width == 0 || height == 0 || area.width == 0 || area.height == 0 {
        return Rect {
            width: 0,
            height: 0,
            ..area
        };
    }
    let max_w = area.width as f64;
    let max_h = area.height as f64 * 2.0;
    let scale = (max_w / width as f64).min(max_h / height as f64);
    let w = ((width as f64 * scale).floor() as u16).clamp(1, area.width);
    let h = (((height as f64 * scale) / 2.0).floor() as u16).clamp(1, area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// Nearest-neighbour downscale into ▀ cells: foreground = upper pixel, background = lower.
struct HalfBlocks<'a> {
    image: &'a RgbImage,
}

impl Widget for HalfBlocks<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let img = self.image;
        if area.width == 0 || area.height == 0 || img.width == 0 || img.height == 0 {
            return;
        }
        if img.pixels.len() < (img.width * img.height * 3) as usize {
            return;
        }
        let pixel = |x: u16, y: u16| -> Color {
            let px = (x as u64 * img.width as u64 / area.width as u64).min(img.width as u64 - 1);
            let py = (y as u64 * img.height as u64 / (area.height as u64 * 2)).min(img.height as u64 - 1);
            let i = ((py * img.width as u64 + px) * 3) as usize;
            Color::Rgb(img.pixels[i], img.pixels[i + 1], img.pixels[i + 2])
        };
        for row in 0..area.height {
            for col in 0..area.width {
                if let Some(cell) = buf.cell_mut((area.x + col, area.y + row)) {
                    cell.set_char('▀').set_style(
                        Style::default()
                            .fg(pixel(col, row * 2))
                            .bg(pixel(col, row * 2 + 1)),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_ratio_inside_the_area() {
        let area = Rect::new(0, 0, 40, 10);
        let r = fit(256, 256, area);
        assert_eq!((r.width, r.height), (20, 10));
        assert_eq!(r.x, 10);
        let wide = fit(1280, 720, area);
        assert!(wide.width <= 40 && wide.height <= 10);
        assert_eq!(fit(0, 10, area).width, 0);
    }

    #[test]
    fn half_blocks_use_upper_and_lower_pixels() {
        // 1×2 image: red over blue.
        let image = RgbImage {
            width: 1,
            height: 2,
            pixels: vec![255, 0, 0, 0, 0, 255],
        };
        let mut buf = Buffer::empty(Rect::new(0, 0, 1, 1));
        HalfBlocks { image: &image }.render(Rect::new(0, 0, 1, 1), &mut buf);
        let cell = &buf[(0, 0)];
        assert_eq!(cell.symbol(), "▀");
        assert_eq!(cell.fg, Color::Rgb(255, 0, 0));
        assert_eq!(cell.bg, Color::Rgb(0, 0, 255));
    }

    #[test]
    fn a_short_pixel_buffer_draws_nothing_instead_of_panicking() {
        let image = RgbImage {
            width: 4,
            height: 4,
            pixels: vec![0; 5],
        };
        let mut buf = Buffer::empty(Rect::new(0, 0, 2, 2));
        HalfBlocks { image: &image }.render(Rect::new(0, 0, 2, 2), &mut buf);
        assert_eq!(buf[(0, 0)].symbol(), " ");
    }
}
