//! Real model files, when present: set `MAAS_FORMATS_REAL_DIR` to a folder and run
//! `cargo test -p maas-formats --release --test real_files -- --ignored --nocapture`. Every
//! `.onnx`, `.safetensors` (with the `config.json` beside it) and `.gguf` file under it is read
//! and its signature printed with the time taken. Without the variable the test does nothing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use maas_formats::{Signature, read_gguf, read_onnx, read_safetensors_header, safetensors_signature};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn summary(sig: &Signature) -> String {
    let mut metadata = sig.metadata.clone();
    if let Some(template) = metadata.get_mut("chat_template").filter(|t| t.is_string()) {
        let text = template.as_str().unwrap_or_default();
        *template = format!("<{} chars: {}…>", text.len(), text.chars().take(60).collect::<String>()).into();
    }
    if let Some(config) = metadata.get_mut("config").filter(|c| c.is_object()) {
        *config = format!("<{} keys>", config.as_object().map_or(0, |o| o.len())).into();
    }
    format!(
        "  inputs:  {:?}\n  outputs: {:?}\n  metadata: {}",
        sig.inputs,
        sig.outputs,
        serde_json::to_string_pretty(&metadata).unwrap_or_default()
    )
}

#[test]
#[ignore = "needs MAAS_FORMATS_REAL_DIR"]
fn real_files() {
    let Some(dir) = std::env::var_os("MAAS_FORMATS_REAL_DIR") else {
        eprintln!("MAAS_FORMATS_REAL_DIR is not set; nothing to read");
        return;
    };
    let mut paths = Vec::new();
    files(Path::new(&dir), &mut paths);
    paths.sort();
    for path in paths {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let sig = match path.extension().and_then(|e| e.to_str()) {
            Some("onnx") => read_onnx(File::open(&path).unwrap()),
            Some("gguf") => read_gguf(File::open(&path).unwrap()),
            Some("safetensors") => {
                let header = read_safetensors_header(File::open(&path).unwrap()).unwrap();
                let config = std::fs::read(path.with_file_name("config.json")).ok();
                safetensors_signature(&[header], config.as_deref())
            }
            _ => continue,
        };
        let elapsed = started.elapsed();
        let sig = sig.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{} ({size} bytes) read in {elapsed:?}\n{}", path.display(), summary(&sig));
    }
}
