//! Validation of registry names: model names, versions, tasks, tags, file paths.

use maas_core::validate::InvalidField;

use crate::RegistryError;

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField { field, reason: reason.into() }
}

fn name_like(field: &'static str, value: &str, max: usize, extra: &[u8]) -> Result<(), InvalidField> {
    if value.is_empty() || value.len() > max {
        return Err(invalid(field, format!("must be 1 to {max} characters long")));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b) || extra.contains(&b)) {
        return Err(invalid(field, "may contain only letters, digits, '-', '_' and '.'"));
    }
    if value.starts_with(['.', '-']) || value.contains("..") {
        return Err(invalid(field, "must not start with '.' or '-' or contain '..'"));
    }
    Ok(())
}

/// Model names: 1–96 of `[A-Za-z0-9._-]`, as on the Hugging Face Hub.
pub fn model_name(value: &str) -> Result<(), InvalidField> {
    name_like("name", value, 96, b"")
}

/// Versions: 1–64 of `[A-Za-z0-9._+-]` (semver works; so do `v3` and `2024-01-01`).
pub fn version(value: &str) -> Result<(), InvalidField> {
    name_like("version", value, 64, b"+")?;
    if value == "main" {
        return Err(invalid("version", "'main' is reserved (it names the latest published version)"));
    }
    Ok(())
}

/// Tasks: 1–64 of `[a-z0-9-]`, e.g. `text-generation`.
pub fn task(value: &str) -> Result<(), InvalidField> {
    if value.is_empty()
        || value.len() > 64
        || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid("task", "must be 1 to 64 lowercase letters, digits or '-'"));
    }
    Ok(())
}

/// Tags: up to 32, each 1–64 of `[a-z0-9._:-]`; returned sorted and deduplicated.
pub fn tags(values: &[String]) -> Result<Vec<String>, InvalidField> {
    if values.len() > 32 {
        return Err(invalid("tags", "at most 32 tags"));
    }
    let mut out = Vec::with_capacity(values.len());
    for tag in values {
        let ok = !tag.is_empty()
            && tag.len() <= 64
            && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._:-".contains(&b));
        if !ok {
            return Err(invalid(
                "tags",
                format!("'{tag}' must be 1 to 64 of lowercase letters, digits, '.', '_', ':', '-'"),
            ));
        }
        out.push(tag.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Free text fields: `description` (≤ 2000 chars), `license` (≤ 100), `readme` (≤ 1 MiB).
pub fn text(field: &'static str, value: &str, max_chars: usize) -> Result<(), InvalidField> {
    if value.chars().count() > max_chars {
        return Err(invalid(field, format!("must be at most {max_chars} characters")));
    }
    Ok(())
}

/// File paths inside a version: relative, `/`-separated, no `.`/`..`/empty segments, no
/// backslashes or control characters, ≤ 512 bytes, ≤ 255 per segment, ≤ 16 levels.
pub fn file_path(path: &str) -> Result<(), RegistryError> {
    let fail = |reason| Err(RegistryError::InvalidPath { path: path.chars().take(600).collect(), reason });
    if path.is_empty() || path.len() > 512 {
        return fail("must be 1 to 512 bytes long");
    }
    if path.starts_with('/') {
        return fail("must be relative");
    }
    if path.chars().any(|c| c.is_control() || matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')) {
        return fail("must not contain control characters or any of \\ : * ? \" < > |");
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > 16 {
        return fail("must be at most 16 levels deep");
    }
    for segment in segments {
        if segment.is_empty() || segment == "." || segment == ".." {
            return fail("must not contain empty, '.' or '..' segments");
        }
        if segment.len() > 255 || segment.trim() != segment {
            return fail("segments must be at most 255 bytes, without leading or trailing spaces");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["model.onnx", "1_Pooling/config.json", "onnx/model_int8.onnx", "a b.txt", "tokenizer@v2.json"] {
            assert!(file_path(ok).is_ok(), "{ok}");
        }
        let long = "a/".repeat(20) + "x";
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "c:x", "a\0b", " a", long.as_str()] {
            assert!(file_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_versions_tags() {
        assert!(model_name("all-MiniLM-L6-v2").is_ok());
        assert!(model_name("bad/name").is_err());
        assert!(model_name(".hidden").is_err());
        assert!(version("1.0.0+build.5").is_ok());
        assert!(version("main").is_err());
        assert!(task("text-generation").is_ok());
        assert!(task("Text").is_err());
        assert_eq!(tags(&["b".into(), "a".into(), "b".into()]).unwrap(), ["a", "b"]);
        assert!(tags(&["Bad Tag".into()]).is_err());
    }
}
