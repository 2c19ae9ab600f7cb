//! The job being composed: a multi-line prompt (ratatui-textarea, soft-wrapped, wide characters
//! measured by display width), its size/steps/seed, the prompt history, and the one-line input
//! used for fields and paths.

use ratatui::style::{Modifier, Style};
use ratatui_textarea::{CursorMove, TextArea, WrapMode};

use super::state::{QueueEntry, SeedChoice, Settings};
use crate::worker::JobId;

/// How many earlier prompts the history keeps.
pub const HISTORY_LEN: usize = 100;

/// The rows of the editor pane, selectable with j/k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftField {
    Prompt,
    Size,
    Steps,
    Seed,
}

impl DraftField {
    pub const ALL: [DraftField; 4] = [
        DraftField::Prompt,
        DraftField::Size,
        DraftField::Steps,
        DraftField::Seed,
    ];
}

#[derive(Debug, Clone)]
pub struct Draft {
    pub prompt: TextArea<'static>,
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub seed: SeedChoice,
    pub field: DraftField,
    /// The queued job this draft edits (`e` on a queued job); `None` = a new job.
    pub editing: Option<JobId>,
    /// Earlier prompts, oldest first.
    pub history: Vec<String>,
    /// Position while browsing the history (Ctrl-P/Ctrl-N); `None` = not browsing.
    pub history_pos: Option<usize>,
    /// The text typed before history browsing started, restored by walking past the newest.
    pub stash: Option<String>,
    /// The one-line input (fields, session paths).
    pub line: TextArea<'static>,
}

pub fn new_prompt_area(text: &str) -> TextArea<'static> {
    let lines: Vec<String> = if text.is_empty() {
        vec![String::new()]
    } else {
        text.lines().map(String::from).collect()
    };
    let mut area = TextArea::new(lines);
    area.set_wrap_mode(WrapMode::WordOrGlyph);
    area.set_cursor_line_style(Style::default());
    area.set_placeholder_text("Describe the image…");
    area.set_placeholder_style(Style::default().add_modifier(Modifier::DIM));
    area.move_cursor(CursorMove::Bottom);
    area.move_cursor(CursorMove::End);
    area
}

pub fn new_line_input(text: &str) -> TextArea<'static> {
    let mut area = TextArea::new(vec![text.to_string()]);
    area.set_cursor_line_style(Style::default());
    area.move_cursor(CursorMove::End);
    area
}

impl Draft {
    pub fn new(settings: &Settings) -> Self {
        Self {
            prompt: new_prompt_area(""),
            width: settings.width,
            height: settings.height,
            steps: settings.steps,
            seed: SeedChoice::Random,
            field: DraftField::Prompt,
            editing: None,
            history: Vec::new(),
            history_pos: None,
            stash: None,
            line: new_line_input(""),
        }
    }

    pub fn prompt_text(&self) -> String {
        self.prompt.lines().join("\n")
    }

    pub fn set_prompt(&mut self, text: &str) {
        self.prompt = new_prompt_area(text);
    }

    /// Fills the draft from a queue entry (edit, or copy of a finished job).
    pub fn load_entry(&mut self, entry: &QueueEntry) {
        self.set_prompt(&entry.prompt);
        self.width = entry.width;
        self.height = entry.height;
        self.steps = entry.steps;
        self.seed = entry.seed;
        self.history_pos = None;
        self.stash = None;
    }

    /// Remembers a prompt (newest last, no duplicates).
    pub fn remember(&mut self, prompt: &str) {
        let prompt = prompt.trim();
        if prompt.is_empty() {
            return;
        }
        self.history.retain(|p| p != prompt);
        self.history.push(prompt.to_string());
        if self.history.len() > HISTORY_LEN {
            self.history.remove(0);
        }
        self.history_pos = None;
    }

    /// Ctrl-P: the previous (older) prompt from the history.
    pub fn history_prev(&mut self) -> bool {
        if self.history.is_empty() {
            return false;
        }
        let pos = match self.history_pos {
            None => {
                self.stash = Some(self.prompt_text());
                self.history.len() - 1
            }
            Some(0) => return false,
            Some(p) => p - 1,
        };
        self.history_pos = Some(pos);
        let text = self.history[pos].clone();
        self.set_prompt(&text);
        true
    }

    /// Ctrl-N: the next (newer) prompt; past the newest, the text typed before browsing.
    pub fn history_next(&mut self) -> bool {
        let Some(pos) = self.history_pos else {
            return false;
        };
        if pos + 1 < self.history.len() {
            self.history_pos = Some(pos + 1);
            let text = self.history[pos + 1].clone();
            self.set_prompt(&text);
        } else {
            self.history_pos = None;
            let text = self.stash.take().unwrap_or_default();
            self.set_prompt(&text);
        }
        true
    }

    pub fn line_text(&self) -> String {
        self.line.lines().first().cloned().unwrap_or_default()
    }
}

/// Parses "1024x768" (also "1024×768", "1024 768", or one number for a square).
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let text = text.trim().to_lowercase();
    let parts: Vec<&str> = text
        .split(|c: char| c == 'x' || c == '×' || c == '*' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("\"{s}\" is not a whole number"))
    };
    let (w, h) = match parts.as_slice() {
        [side] => (number(side)?, number(side)?),
        [w, h] => (number(w)?, number(h)?),
        _ => return Err("expected WIDTHxHEIGHT, e.g. 1024x768".into()),
    };
    check_side("width", w)?;
    check_side("height", h)?;
    Ok((w, h))
}

fn check_side(name: &str, side: u32) -> Result<(), String> {
    use crate::model::{MAX_SIDE, SIZE_MULTIPLE};
    if !(SIZE_MULTIPLE..=MAX_SIDE).contains(&side) {
        return Err(format!(
            "{name} {side} is out of range ({SIZE_MULTIPLE}..={MAX_SIDE})"
        ));
    }
    if side % SIZE_MULTIPLE != 0 {
        return Err(format!("{name} {side} is not a multiple of {SIZE_MULTIPLE}"));
    }
    Ok(())
}

pub fn parse_steps(text: &str) -> Result<usize, String> {
    let steps: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("\"{}\" is not a whole number", text.trim()))?;
    if steps == 0 || steps > crate::model::MAX_STEPS {
        return Err(format!(
            "steps {steps} is out of range (1..={})",
            crate::model::MAX_STEPS
        ));
    }
    Ok(steps)
}

pub fn parse_seed(text: &str) -> Result<SeedChoice, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("random") || text == "r" {
        return Ok(SeedChoice::Random);
    }
    text.parse::<u64>()
        .map(SeedChoice::Fixed)
        .map_err(|_| format!("\"{text}\" is not a seed (a whole number ≥ 0, or \"random\")"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_checked() {
        assert_eq!(parse_size("1024x768"), Ok((1024, 768)));
        assert_eq!(parse_size(" 512×512 "), Ok((512, 512)));
        assert_eq!(parse_size("256"), Ok((256, 256)));
        assert!(parse_size("1000x1000").unwrap_err().contains("multiple of 16"));
        assert!(parse_size("0x16").unwrap_err().contains("out of range"));
        assert!(parse_size("axb").unwrap_err().contains("not a whole number"));
        assert!(parse_size("1x2x3").is_err());
    }

    #[test]
    fn steps_and_seeds_parse() {
        assert_eq!(parse_steps("9"), Ok(9));
        assert!(parse_steps("0").is_err());
        assert!(parse_steps("-1").is_err());
        assert_eq!(parse_seed("random"), Ok(SeedChoice::Random));
        assert_eq!(parse_seed(""), Ok(SeedChoice::Random));
        assert_eq!(parse_seed("42"), Ok(SeedChoice::Fixed(42)));
        assert!(parse_seed("-3").is_err());
    }

    #[test]
    fn history_walks_back_and_restores_the_typed_text() {
        let mut draft = Draft::new(&Settings::default());
        draft.remember("a cat");
        draft.remember("a dog");
        draft.remember("a cat"); // moves to newest, no duplicate
        assert_eq!(draft.history, vec!["a dog", "a cat"]);
        draft.set_prompt("unfinished");
        assert!(draft.history_prev());
        assert_eq!(draft.prompt_text(), "a cat");
        assert!(draft.history_prev());
        assert_eq!(draft.prompt_text(), "a dog");
        assert!(!draft.history_prev());
        assert!(draft.history_next());
        assert_eq!(draft.prompt_text(), "a cat");
        assert!(draft.history_next());
        assert_eq!(draft.prompt_text(), "unfinished");
        assert!(!draft.history_next());
    }

    #[test]
    fn multi_line_and_wide_prompts_round_trip() {
        let mut draft = Draft::new(&Settings::default());
        draft.set_prompt("一只猫坐在窗台上\nsecond line");
        assert_eq!(draft.prompt_text(), "一只猫坐在窗台上\nsecond line");
        draft.prompt.insert_str("，晚霞");
        assert!(draft.prompt_text().ends_with("second line，晚霞"));
    }
}
