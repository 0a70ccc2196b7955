//! Truncated, corrupted and foreign files: always an error with a readable message, never a
//! panic.

use std::io::Cursor;

use maas_formats::{FormatError, read_gguf, read_onnx, read_safetensors_header};

use crate::fixtures::*;

type Reader = fn(&[u8]) -> Result<(), FormatError>;

fn onnx(bytes: &[u8]) -> Result<(), FormatError> {
    read_onnx(Cursor::new(bytes)).map(drop)
}

fn safetensors(bytes: &[u8]) -> Result<(), FormatError> {
    read_safetensors_header(Cursor::new(bytes)).map(drop)
}

fn gguf(bytes: &[u8]) -> Result<(), FormatError> {
    read_gguf(Cursor::new(bytes)).map(drop)
}

const READERS: [(&str, Reader); 3] = [("onnx", onnx), ("safetensors", safetensors), ("gguf", gguf)];

fn fixtures() -> [(&'static str, Vec<u8>, Reader); 3] {
    [
        ("onnx", onnx_bytes(), onnx),
        ("safetensors", safetensors_fixture(), safetensors),
        ("gguf", gguf_fixture().to_bytes(), gguf),
    ]
}

#[test]
fn the_fixtures_read() {
    for (name, bytes, read) in fixtures() {
        read(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn truncated_fixtures_are_errors() {
    for (name, bytes, read) in fixtures() {
        let len = bytes.len();
        for cut in [0, 1, len / 10, len / 2, len - 1] {
            let err = read(&bytes[..cut]).expect_err(&format!("{name} cut at {cut} of {len}"));
            assert!(!err.to_string().is_empty());
            match name {
                "gguf" if cut >= 4 => {
                    assert!(matches!(err, FormatError::Truncated { .. }), "{name} cut at {cut}: {err}")
                }
                // Cut inside the data: the last tensor's range lies outside the data section.
                "safetensors" if cut > 8 => assert!(
                    matches!(err, FormatError::Truncated { .. } | FormatError::TensorOutOfBounds { .. }),
                    "{name} cut at {cut}: {err}"
                ),
                _ => {}
            }
        }
    }
}

/// Every prefix of the safetensors and GGUF fixtures is an error (their data must reach the end
/// of the file). A prefix of an ONNX file can be a valid model when it ends between two
/// top-level fields; none may panic.
#[test]
fn every_prefix_is_handled() {
    for (name, bytes, read) in fixtures() {
        for cut in 0..bytes.len() {
            let result = read(&bytes[..cut]);
            if name != "onnx" {
                assert!(result.is_err(), "{name} cut at {cut} of {} was accepted", bytes.len());
            }
        }
    }
}

#[test]
fn a_few_bytes_are_not_a_gguf_file() {
    assert_eq!(
        gguf(b"GG").unwrap_err().to_string(),
        "not a GGUF file (magic is 47 47 \"GG\", and the file ends there)"
    );
}

#[test]
fn empty_files_say_so() {
    for (name, read) in READERS {
        assert_eq!(read(&[]).unwrap_err().to_string(), "the file is empty", "{name}");
    }
}

#[test]
fn a_jpeg_is_refused_by_every_reader() {
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00];
    jpeg.extend_from_slice(&noise(7, 500));
    let messages: Vec<String> = READERS.iter().map(|(_, read)| read(&jpeg).unwrap_err().to_string()).collect();
    assert!(messages[0].starts_with("not an ONNX model: "), "{}", messages[0]);
    assert!(messages[1].contains("(is this a safetensors file?)"), "{}", messages[1]);
    assert!(messages[2].starts_with("not a GGUF file (magic is ff d8 ff e0"), "{}", messages[2]);
}

#[test]
fn noise_and_text_are_refused() {
    for seed in 0..300u64 {
        let bytes = noise(seed, (seed as usize * 37) % 3000 + 1);
        for (name, read) in READERS {
            assert!(read(&bytes).is_err(), "{name} accepted noise #{seed}");
        }
    }
    for (name, read) in READERS {
        let err = read(b"hello, this is plainly not a model\n").unwrap_err();
        assert!(!err.to_string().is_empty(), "{name}");
    }
}

/// Noise behind a valid start reaches the deeper parsing code.
#[test]
fn noise_after_a_valid_start_is_refused() {
    for seed in 0..300u64 {
        let mut gguf_like = b"GGUF\x03\x00\x00\x00".to_vec();
        gguf_like.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        gguf_like.extend_from_slice(&noise(seed, 2000));
        assert!(gguf(&gguf_like).is_err());

        let mut st_like = 100u64.to_le_bytes().to_vec();
        st_like.push(b'{');
        st_like.extend_from_slice(&noise(seed, 500));
        assert!(safetensors(&st_like).is_err());

        let mut onnx_like = vec![0x08, 0x08, 0x3a, 0xe8, 0x07];
        onnx_like.extend_from_slice(&noise(seed, 1000));
        assert!(onnx(&onnx_like).is_err());
    }
}

/// Random byte flips in valid files: any result is fine except a panic.
#[test]
fn corrupted_fixtures_never_panic() {
    for (_, bytes, read) in fixtures() {
        let flips = noise(99, 4 * 3000);
        for chunk in flips.chunks(4) {
            let mut corrupted = bytes.clone();
            let at = u16::from_le_bytes([chunk[0], chunk[1]]) as usize % bytes.len();
            corrupted[at] ^= chunk[2] | 1;
            if chunk[3] & 1 == 1 {
                let next = (at + 1) % bytes.len();
                corrupted[next] = chunk[3];
            }
            let _ = read(&corrupted);
        }
    }
}
