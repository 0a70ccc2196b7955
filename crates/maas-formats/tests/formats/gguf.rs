//! GGUF: metadata, skipped arrays, tensor data bounds, and what a bad header reports.

use std::io::Cursor;

use maas_formats::{FormatError, Signature, read_gguf};
use serde_json::json;

use crate::fixtures::*;

fn read(gguf: &Gguf) -> Result<Signature, FormatError> {
    read_gguf(Cursor::new(gguf.to_bytes()))
}

fn with(key: &str, value: GgufValue) -> Gguf {
    let mut gguf = gguf_fixture();
    gguf.kvs.push((key.into(), value));
    gguf
}

#[test]
fn reads_the_facts_a_runtime_needs() {
    let sig = read(&gguf_fixture()).unwrap();
    assert!(sig.inputs.is_empty() && sig.outputs.is_empty());
    assert_eq!(
        sig.metadata,
        json!({
            "gguf_version": 3,
            "architecture": "llama",
            "name": "tiny-llama",
            "context_length": 2048,
            "embedding_length": 16,
            "block_count": 1,
            "chat_template": CHATML,
            "tokenizer": "gpt2",
            "vocab_size": 100,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "file_type": 3,
            "tensor_count": 4,
            "parameters": 1600 + 512 + 512 + 16,
        })
    );
}

#[test]
fn version_2_reads_and_absent_facts_are_null() {
    let gguf = Gguf { version: 2, alignment: 32, kvs: Vec::new(), tensors: Vec::new() };
    let sig = read(&gguf).unwrap();
    assert_eq!(sig.metadata["gguf_version"], json!(2));
    assert_eq!(sig.metadata["architecture"], json!(null));
    assert_eq!(sig.metadata["chat_template"], json!(null));
    assert_eq!(sig.metadata["vocab_size"], json!(null));
    assert_eq!(sig.metadata["parameters"], json!(0));
}

#[test]
fn header_problems_are_explained() {
    let mut v1 = gguf_fixture();
    v1.version = 1;
    assert!(read(&v1).unwrap_err().to_string().starts_with("unsupported GGUF version 1 "));

    let mut big_endian = gguf_fixture().to_bytes();
    big_endian[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(read_gguf(Cursor::new(big_endian)).unwrap_err().to_string().contains("version 50331648"));

    let err = read_gguf(Cursor::new(b"GGML\x03\x00\x00\x00".to_vec())).unwrap_err();
    assert_eq!(err.to_string(), "not a GGUF file (magic is 47 47 4d 4c \"GGML\")");

    let mut huge = b"GGUF".to_vec();
    huge.extend_from_slice(&3u32.to_le_bytes());
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    huge.extend_from_slice(&0u64.to_le_bytes());
    assert_eq!(
        read_gguf(Cursor::new(huge)).unwrap_err().to_string(),
        "malformed GGUF file: the tensor count is 18446744073709551615, more than the 10000000 accepted"
    );

    let mut many = b"GGUF".to_vec();
    many.extend_from_slice(&3u32.to_le_bytes());
    many.extend_from_slice(&10u64.to_le_bytes());
    many.extend_from_slice(&1000u64.to_le_bytes());
    assert_eq!(
        read_gguf(Cursor::new(many)).unwrap_err().to_string(),
        "truncated: the file ends inside the 1000 metadata entries and 10 tensor infos (needs 13264 bytes, has 24)"
    );
}

#[test]
fn metadata_problems_are_explained() {
    let unknown = with("x.y", GgufValue::Raw(13, vec![0; 8]));
    assert_eq!(
        read(&unknown).unwrap_err().to_string(),
        "malformed GGUF file: metadata 'x.y' has unknown value type 13"
    );

    let long_array =
        with("x.y", GgufValue::Raw(9, [4u32.to_le_bytes().to_vec(), u64::MAX.to_le_bytes().to_vec()].concat()));
    assert!(read(&long_array).unwrap_err().to_string().contains("the 18446744073709551615 elements of 'x.y'"));

    let bad_utf8 = with("general.name", GgufValue::Raw(8, [2u64.to_le_bytes().to_vec(), vec![0xff, 0xfe]].concat()));
    assert_eq!(
        read(&bad_utf8).unwrap_err().to_string(),
        "malformed GGUF file: the value of 'general.name' is not valid UTF-8"
    );

    let mut alignment = gguf_fixture();
    alignment.kvs.retain(|(k, _)| k != "general.alignment");
    alignment.kvs.push(("general.alignment".into(), GgufValue::U32(24)));
    assert_eq!(
        read(&alignment).unwrap_err().to_string(),
        "malformed GGUF file: general.alignment is 24, not a power of two"
    );
}

/// A 20 MiB chat template is refused without being read; skipped strings have no cap.
#[test]
fn kept_strings_are_capped() {
    let big = 20u64 << 20;
    let gguf = Gguf {
        version: 3,
        alignment: 32,
        kvs: vec![("tokenizer.chat_template".into(), GgufValue::Raw(8, big.to_le_bytes().to_vec()))],
        tensors: Vec::new(),
    };
    let mut file = VirtualFile::new(gguf.to_bytes(), big, Vec::new());
    let err = read_gguf(&mut file).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the value of 'tokenizer.chat_template' is 20971520 bytes, over the limit of 16777216 bytes"
    );
    assert!(file.bytes_read < 1 << 20);

    let gguf = Gguf {
        version: 3,
        alignment: 32,
        kvs: vec![("tokenizer.huggingface.json".into(), GgufValue::Raw(8, big.to_le_bytes().to_vec()))],
        tensors: Vec::new(),
    };
    let mut file = VirtualFile::new(gguf.to_bytes(), big, Vec::new());
    read_gguf(&mut file).unwrap();
    assert!(file.bytes_read < 1 << 20);
}

#[test]
fn tensor_problems_are_explained() {
    let mut gguf = gguf_fixture();
    gguf.tensors[1].offset = Some(6401);
    assert_eq!(
        read(&gguf).unwrap_err().to_string(),
        "malformed GGUF file: tensor 'blk.0.attn_q.weight' starts at data offset 6401, not a multiple of the alignment 32"
    );

    let mut gguf = gguf_fixture();
    gguf.tensors[1].dims = vec![31, 16];
    assert!(
        read(&gguf).unwrap_err().to_string().contains("rows of 31 elements, not a multiple of the Q4_0 block size 32")
    );

    let mut gguf = gguf_fixture();
    gguf.tensors[0].dims = vec![1, 2, 3, 4, 5];
    assert!(read(&gguf).unwrap_err().to_string().contains("has 5 dimensions; GGUF allows at most 4"));

    let mut gguf = gguf_fixture();
    gguf.tensors[3].ty = 31;
    assert!(
        read(&gguf).unwrap_err().to_string().contains("ggml type 31 (Q4_0_4_4), which GGUF files no longer support")
    );

    let mut gguf = gguf_fixture();
    gguf.tensors[0].name = "x".repeat(65);
    assert_eq!(read(&gguf).unwrap_err().to_string(), "the name of tensor #0 is 65 bytes, over the limit of 64 bytes");

    // A type newer than this reader is accepted; only its start is checked.
    let mut gguf = gguf_fixture();
    gguf.tensors[3].ty = 77;
    assert!(read(&gguf).is_ok());
}

#[test]
fn missing_tensor_data_is_truncation() {
    let bytes = gguf_fixture().to_bytes();
    let cut = bytes.len() - 1;
    let err = read_gguf(Cursor::new(bytes[..cut].to_vec())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "truncated: the file ends inside the data of tensor 'output_norm.weight' (needs {} bytes, has {cut})",
            bytes.len()
        )
    );
}

/// 1 GiB of tensor data is bounds-checked, not read.
#[test]
fn data_is_never_read() {
    let gib = 1u64 << 30;
    let mut gguf = gguf_fixture();
    gguf.tensors = vec![GgufTensor { name: "big".into(), dims: vec![gib / 4], ty: 0, bytes: gib, offset: None }];
    let (head, data_len) = gguf.header_and_data_len();
    assert_eq!(data_len, gib);
    let mut file = VirtualFile::new(head, gib, Vec::new());
    let sig = read_gguf(&mut file).unwrap();
    assert_eq!(sig.metadata["parameters"], json!(gib / 4));
    assert!(file.bytes_read < 1 << 20);
}
