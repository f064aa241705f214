#!/usr/bin/env python3
"""Convert sentence-transformers' all-MiniLM-L6-v2 to an f32 GGUF for llama.cpp.

llama.cpp's own converter (convert_hf_to_gguf.py) needs torch and transformers;
this script needs only gguf, safetensors and numpy. It writes what that
converter's BertModel writes for this model with `--outtype f32 --model-name
all-MiniLM-L6-v2`: architecture `bert`, non-causal attention, MEAN pooling,
the WordPiece vocabulary in llama.cpp's phantom-space form, and the encoder
tensors (position ids and the unused pooler are dropped, as upstream does).

Usage: python minilm_to_gguf.py <model_dir> <out.gguf>
"""

import json
import os
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors import safe_open

MODEL_NAME = "all-MiniLM-L6-v2"
# Upstream picks tokenizer.ggml.pre by hashing how the HF tokenizer encodes a
# probe text; bert-base-uncased vocabularies (this one) hash to "jina-v2-en".
# llama.cpp ignores the value for WordPiece vocabularies.
TOKENIZER_PRE = "jina-v2-en"
DROPPED = ("embeddings.position_ids", "pooler.", "cls.")
# Tensors llama.cpp's bert loader requires (llama_model_bert::load_arch_tensors).
REQUIRED = ["token_embd.weight", "position_embd.weight", "token_embd_norm.weight", "token_embd_norm.bias"]
REQUIRED_PER_LAYER = ["attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                      "attn_output_norm.weight", "attn_output_norm.bias", "ffn_up.weight",
                      "ffn_down.weight", "layer_output_norm.weight", "layer_output_norm.bias"]


class ConversionError(Exception):
    pass


def load_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def add_tensors(writer: gguf.GGUFWriter, model_dir: Path, n_layers: int) -> int:
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    written = []
    with safe_open(model_dir / "model.safetensors", framework="np") as f:
        for name in f.keys():
            short = name.removeprefix("bert.")
            if short.startswith(DROPPED):
                continue
            new_name = names.get_name(short, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise ConversionError(f"no GGUF name for tensor {name!r}")
            writer.add_tensor(new_name, f.get_tensor(name).astype(np.float32))
            written.append(new_name)
    required = REQUIRED + [f"blk.{i}.{t}" for i in range(n_layers) for t in REQUIRED_PER_LAYER]
    if missing := sorted(set(required) - set(written)):
        raise ConversionError(f"model.safetensors lacks tensors llama.cpp needs: {missing}")
    return len(written)


def add_vocab(writer: gguf.GGUFWriter, model_dir: Path, hparams: dict) -> None:
    tokenizer = load_json(model_dir / "tokenizer.json")
    if tokenizer["model"]["type"] != "WordPiece":
        raise ConversionError(f"expected a WordPiece tokenizer, got {tokenizer['model']['type']}")
    vocab = dict(tokenizer["model"]["vocab"])
    added = tokenizer["added_tokens"]
    if not all(t["special"] for t in added):
        raise ConversionError("non-special added tokens are not supported")
    vocab.update((t["content"], t["id"]) for t in added)
    by_id = {i: tok for tok, i in vocab.items()}
    n_vocab = hparams["vocab_size"]
    if sorted(by_id) != list(range(n_vocab)):
        raise ConversionError(f"tokenizer.json ids are not exactly 0..{n_vocab - 1}")

    control = {t["id"] for t in added}
    tokens, types = [], []
    for i in range(n_vocab):
        tok = by_id[i]
        if i in control:
            types.append(gguf.TokenType.CONTROL)
        else:
            # llama.cpp's WPM tokenizer marks word starts with "▁" instead of
            # marking continuations with "##".
            tok = tok[2:] if tok.startswith("##") else "\u2581" + tok
            types.append(gguf.TokenType.NORMAL)
        tokens.append(tok)

    writer.add_token_type_count(hparams.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(types)

    # Special ids as gguf's SpecialVocab derives them: bos/eos fall back to
    # [CLS]/[SEP]; there is no GGUF key for cls. The add_* flags follow the
    # tokenizer's "[CLS] A [SEP]" template.
    config = load_json(model_dir / "tokenizer_config.json")
    special = {kind: vocab[config[f"{kind}_token"]] for kind in ("cls", "sep", "unk", "pad", "mask")}
    writer.add_bos_token_id(special["cls"])
    writer.add_eos_token_id(special["sep"])
    writer.add_unk_token_id(special["unk"])
    writer.add_sep_token_id(special["sep"])
    writer.add_pad_token_id(special["pad"])
    writer.add_mask_token_id(special["mask"])
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_bool("tokenizer.ggml.add_eos_token", True)
    writer.add_bool("tokenizer.ggml.add_sep_token", False)


def convert(model_dir: Path, out: Path) -> int:
    hparams = load_json(model_dir / "config.json")
    if hparams.get("model_type") != "bert":
        raise ConversionError(f"expected model_type 'bert', got {hparams.get('model_type')!r}")
    if not load_json(model_dir / "1_Pooling" / "config.json").get("pooling_mode_mean_tokens"):
        raise ConversionError("expected mean pooling in 1_Pooling/config.json")

    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    n_tensors = add_tensors(writer, model_dir, hparams["num_hidden_layers"])

    writer.add_type(gguf.GGUFType.MODEL)
    params = writer.get_total_parameter_count()
    metadata = gguf.Metadata.load(None, model_dir, MODEL_NAME, params[0])
    if metadata.size_label is None:
        metadata.size_label = gguf.size_label(*params)
    metadata.set_gguf_meta_model(writer)

    writer.add_block_count(hparams["num_hidden_layers"])
    writer.add_context_length(hparams["max_position_embeddings"])
    writer.add_embedding_length(hparams["hidden_size"])
    writer.add_feed_forward_length(hparams["intermediate_size"])
    writer.add_head_count(hparams["num_attention_heads"])
    writer.add_layer_norm_eps(hparams["layer_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, model_dir, hparams)

    tmp = out.with_name(out.name + ".tmp")
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return n_tensors


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} <model_dir> <out.gguf>")
    out = Path(sys.argv[2])
    try:
        n_tensors = convert(Path(sys.argv[1]), out)
    except Exception as e:
        sys.exit(f"minilm_to_gguf: {type(e).__name__}: {e}")
    print(f"{out}: {n_tensors} tensors")


if __name__ == "__main__":
    main()
