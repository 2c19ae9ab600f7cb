//! Writing generated images: PNG with text metadata, written atomically (a temp file in the same
//! directory, then rename), so a failed or cancelled write never leaves a partial file at the
//! chosen path and nothing is written elsewhere.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{RgbImage, StageTimings};

/// What is stored with each image (PNG text chunks, `gen --json`, sessions).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageMetadata {
    pub prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub width: u32,
    pub height: u32,
    /// The model label, e.g. "demo model (random weights)".
    pub model: String,
    /// zimage-tui version.
    pub version: String,
    pub timings: StageTimings,
}

impl ImageMetadata {
    /// (keyword, text) pairs as stored in the PNG.
    pub fn text_chunks(&self) -> Vec<(&'static str, String)> {
        let timings = serde_json::to_string(&self.timings).unwrap_or_default();
        vec![
            ("prompt", self.prompt.clone()),
            ("seed", self.seed.to_string()),
            ("steps", self.steps.to_string()),
            ("size", format!("{}x{}", self.width, self.height)),
            ("model", self.model.clone()),
            ("Software", format!("zimage-tui {}", self.version)),
            ("timings", timings),
        ]
    }
}

/// Checks that `path` can be written, before any compute: creates missing parent directories
/// and creates (then removes) a temp file next to it. Refuses a directory as the target.
pub fn check_writable(path: &Path) -> io::Result<()> {
    if path.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the output path is empty",
        ));
    }
    if path.is_dir() {
        return Err(annotate(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "is a directory"),
        ));
    }
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|err| annotate(&dir, err))?;
    let probe = temp_path(path);
    fs::File::create(&probe).map_err(|err| annotate(path, err))?;
    let _ = fs::remove_file(&probe);
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().readonly() {
            return Err(annotate(
                path,
                io::Error::new(io::ErrorKind::PermissionDenied, "the existing file is read-only"),
            ));
        }
    }
    Ok(())
}

/// Encodes `image` as PNG with `metadata` and writes it atomically to `path`.
pub fn write_png(path: &Path, image: &RgbImage, metadata: &ImageMetadata) -> io::Result<()> {
    let bytes = encode_png(image, &metadata.text_chunks())?;
    write_atomically(path, &bytes)
}

/// Encodes an RGB8 image as PNG with text chunks: tEXt where the text is Latin-1, iTXt (UTF-8)
/// otherwise (e.g. Chinese prompts).
pub fn encode_png(image: &RgbImage, text: &[(&str, String)]) -> io::Result<Vec<u8>> {
    let expected = image.width as usize * image.height as usize * 3;
    if image.pixels.len() != expected || image.width == 0 || image.height == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "image buffer has {} bytes, {}x{} RGB needs {expected}",
                image.pixels.len(),
                image.width,
                image.height
            ),
        ));
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (keyword, value) in text {
            let latin1 = value.chars().all(|c| (c as u32) < 256);
            let added = if latin1 {
                encoder.add_text_chunk(keyword.to_string(), value.clone())
            } else {
                encoder.add_itxt_chunk(keyword.to_string(), value.clone())
            };
            added.map_err(io::Error::other)?;
        }
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        writer.write_image_data(&image.pixels).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
    }
    Ok(bytes)
}

/// A PNG's size and text chunks, as read back by [`read_png_text`].
#[derive(Debug, Clone, PartialEq)]
pub struct PngText {
    pub width: u32,
    pub height: u32,
    /// (keyword, text) from tEXt, zTXt and iTXt chunks, in that order.
    pub chunks: Vec<(String, String)>,
}

impl PngText {
    /// The text of the first chunk with this keyword.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.chunks
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a PNG's size and text chunks (decoding the image data, so a corrupt file fails).
pub fn read_png_text(path: &Path) -> io::Result<PngText> {
    let file = io::BufReader::new(fs::File::open(path)?);
    let mut decoder = png::Decoder::new(file);
    decoder.set_ignore_text_chunk(false);
    let mut reader = decoder.read_info().map_err(io::Error::other)?;
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    reader.next_frame(&mut pixels).map_err(io::Error::other)?;
    let info = reader.info();
    let mut text: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .collect();
    for chunk in &info.compressed_latin1_text {
        text.push((chunk.keyword.clone(), chunk.get_text().map_err(io::Error::other)?));
    }
    for chunk in &info.utf8_text {
        text.push((chunk.keyword.clone(), chunk.get_text().map_err(io::Error::other)?));
    }
    Ok(PngText {
        width: info.width,
        height: info.height,
        chunks: text,
    })
}

/// Writes `bytes` to a temp file in `path`'s directory, syncs, then renames over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|err| annotate(&dir, err))?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file = BufWriter::new(fs::File::create(&temp)?);
        file.write_all(bytes)?;
        file.into_inner().map_err(|err| err.into_error())?.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|err| annotate(path, err))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A hidden, unique name next to `path`.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    parent_dir(path).join(format!(".{name}.{}.{unique}.tmp", std::process::id()))
}

fn annotate(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("cannot write {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(prompt: &str) -> ImageMetadata {
        ImageMetadata {
            prompt: prompt.into(),
            seed: 42,
            steps: 8,
            width: 2,
            height: 1,
            model: "demo model (random weights)".into(),
            version: "0.1.0".into(),
            timings: StageTimings::default(),
        }
    }

    #[test]
    fn png_round_trips_text_including_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/out.png");
        let image = RgbImage {
            width: 2,
            height: 1,
            pixels: vec![255, 0, 0, 0, 0, 255],
        };
        write_png(&path, &image, &metadata("一只猫 on a mat")).unwrap();
        let png = read_png_text(&path).unwrap();
        assert_eq!((png.width, png.height), (2, 1));
        assert_eq!(png.get("prompt"), Some("一只猫 on a mat"));
        assert_eq!(png.get("seed"), Some("42"));
        assert_eq!(png.get("model"), Some("demo model (random weights)"));
        // No temp files left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn bad_buffer_and_directory_target_are_refused() {
        let image = RgbImage {
            width: 2,
            height: 2,
            pixels: vec![0; 5],
        };
        assert!(encode_png(&image, &[]).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(dir.path()).is_err());
        check_writable(&dir.path().join("new/nested/x.png")).unwrap();
        assert!(dir.path().join("new/nested").is_dir());
    }
}
