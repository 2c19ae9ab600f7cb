//! Prompt lists for the soak: built-in (Chinese and English, the kinds of prompts the hand-made
//! review used) or one prompt per line from a file.

use std::path::Path;

use super::BenchError;

/// The built-in soak prompts, cycled when more images than prompts are asked for.
pub const BUILT_IN: &[&str] = &[
    "A futuristic city at night, neon lights reflecting on wet streets, cyberpunk style",
    "一位穿着红色唐装的老奶奶坐在四合院里包饺子,窗外飘着雪花",
    "A red fox sitting in a snowy birch forest at dawn, soft golden light",
    "汉服少女站在桃花树下,齐胸襦裙,微风吹起衣袖",
    "Macro photograph of a dew-covered spider web, shallow depth of field",
    "重庆洪崖洞夜景,吊脚楼,霓虹灯,江面倒影",
    "An astronaut reading a newspaper on a park bench, 1950s film photo",
    "水墨山水画风格,远山,小舟,留白",
    "A cozy bookshop interior with warm lamps and a sleeping cat on the counter",
    "赛博朋克猫咪,机械义眼,发光项圈,雨夜街头",
    "Isometric illustration of a tiny island with a lighthouse and sailboats",
    "秋天的故宫角楼,金色银杏叶,蓝天白云",
    "Studio portrait of an elderly fisherman with a knitted cap, dramatic side light",
    "一碗热气腾腾的兰州牛肉面,特写,美食摄影",
    "A steam locomotive crossing a stone viaduct in the Scottish highlands",
    "敦煌壁画风格的飞天仙女,飘带,金色与青绿色",
];

/// Reads one prompt per line; blank lines and lines starting with `#` are skipped.
pub fn load_file(path: &Path) -> Result<Vec<String>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::Input(format!("cannot read prompt file {}: {e}", path.display())))?;
    let prompts = parse(&text);
    if prompts.is_empty() {
        return Err(BenchError::Input(format!(
            "prompt file {} has no prompts",
            path.display()
        )));
    }
    Ok(prompts)
}

/// One prompt per non-blank, non-comment line, trimmed.
pub fn parse(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

pub fn built_in() -> Vec<String> {
    BUILT_IN.iter().map(|p| (*p).to_owned()).collect()
}

/// How the report names the built-in list.
pub fn built_in_source(count: usize) -> String {
    format!("built-in ({count} prompts, Chinese and English)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_blank_and_comments() {
        let text = "# soak prompts\n\n  a cat  \n水墨山水\n   \n#x\nlast";
        assert_eq!(parse(text), vec!["a cat", "水墨山水", "last"]);
    }

    #[test]
    fn built_in_has_both_languages() {
        let list = built_in();
        assert!(list.iter().any(|p| p.is_ascii()));
        assert!(list.iter().any(|p| !p.is_ascii()));
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.txt");
        std::fs::write(&path, "# nothing\n\n").unwrap();
        assert!(matches!(load_file(&path), Err(BenchError::Input(_))));
        assert!(matches!(
            load_file(&dir.path().join("missing")),
            Err(BenchError::Input(_))
        ));
    }
}
