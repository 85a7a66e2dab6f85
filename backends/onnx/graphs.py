"""Whisper's encoder, cross-attention K/V and decoder step as ONNX graphs (see ``manifest`` roles).

The decoder is split in two so nothing is computed twice: ``cross_kv`` turns encoder features
into every layer's cross-attention keys and values once per window, and ``decoder`` advances T
tokens of rows that may have different lengths (``lengths``): its self-attention caches have
``n_text_ctx`` columns, masked past each row's length, and it returns only the new keys and
values, which the caller writes in place. So no step copies a cache, rows that joined at
different times decode side by side, and a row's sums run over the same columns alone or batched.
Keys are kept transposed, ``(B, H, dh, S)``, so attention scores are a plain ``q @ k_t`` with no
Transpose of the 1500-long cross keys at every step. The query projection has the attention
scale (dh ** -0.5) folded into its weights. Logits are computed only at the requested positions.
The decoder also outputs the cross-attention scores of the model's alignment heads
(``cross_qk``), which word timestamps read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from backends.onnx.graph import GraphBuilder
from backends.onnx.manifest import TensorSpec
from runtime.audio.constants import N_FRAMES
from runtime.model.weights import WhisperModel

Built = tuple[onnx.ModelProto, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]


def _scaled_query(g: GraphBuilder, x: str, w: dict, prefix: str, d_head: int) -> str:
    """The query projection with whisper's attention scale folded in (one MatMul + Add)."""
    scale = d_head**-0.5
    folded = {
        f"{prefix}.weight": np.asarray(w[f"{prefix}.weight"], np.float64) * scale,
        f"{prefix}.bias": np.asarray(w[f"{prefix}.bias"], np.float64) * scale,
    }
    return g.linear(x, folded, prefix)


def _conv(g: GraphBuilder, x: str, w: dict, prefix: str, stride: int) -> str:
    return g.op(
        "Conv",
        [
            x,
            g.weight(f"{prefix}.weight", w[f"{prefix}.weight"]),
            g.weight(f"{prefix}.bias", w[f"{prefix}.bias"]),
        ],
        prefix,
        kernel_shape=[3],
        pads=[1, 1],
        strides=[stride],
    )


def _self_attention(
    g: GraphBuilder, h: str, w: dict, prefix: str, n_head: int, d_head: int, d_model: int
) -> str:
    q = g.split_heads(
        _scaled_query(g, h, w, f"{prefix}.query", d_head), n_head, d_head, f"{prefix}.q"
    )
    k_t = g.split_heads(
        g.linear(h, w, f"{prefix}.key"), n_head, d_head, f"{prefix}.k", perm=(0, 2, 3, 1)
    )
    v = g.split_heads(g.linear(h, w, f"{prefix}.value"), n_head, d_head, f"{prefix}.v")
    context = g.merge_heads(g.attend(q, k_t, v, None, prefix), d_model, prefix)
    return g.linear(context, w, f"{prefix}.out")


def _fused_self_attention(
    g: GraphBuilder, h: str, w: dict, prefix: str, n_head: int, d_head: int, d_model: int
) -> str:
    """``_self_attention`` as one ``com.microsoft.MultiHeadAttention`` node: ONNX Runtime's CPU
    kernel computes scores, softmax and context in tiles without writing the (H, T, T) scores,
    and the CUDA provider runs it as flash attention. NPU compilers expect standard ops."""
    q = _scaled_query(g, h, w, f"{prefix}.query", d_head)  # whisper's scale already folded in
    k, v = g.linear(h, w, f"{prefix}.key"), g.linear(h, w, f"{prefix}.value")
    context = g.op(
        "MultiHeadAttention",
        [q, k, v],
        f"{prefix}/mha",
        domain="com.microsoft",
        num_heads=n_head,
        scale=1.0,
    )
    return g.linear(context, w, f"{prefix}.out")


def build_encoder(
    model: WhisperModel, dtype: type, batch: int | None, fused_attention: bool = False
) -> Built:
    """mel (B, n_mels, 3000) -> features (B, n_audio_ctx, D); B fixed when ``batch`` is given;
    self-attention as ONNX Runtime's fused contrib op when ``fused_attention``."""
    d, w = model.dims, model.weights
    g = GraphBuilder(dtype)
    attention = _fused_self_attention if fused_attention else _self_attention
    b = batch or "batch"
    d_head = d.n_audio_state // d.n_audio_head
    mel = g.add_input("mel", np.float32, [b, d.n_mels, N_FRAMES])
    x = g.gelu(_conv(g, g.cast_in(mel), w, "encoder.conv1", 1), "encoder.conv1/gelu")
    x = g.gelu(_conv(g, x, w, "encoder.conv2", 2), "encoder.conv2/gelu")
    x = g.op("Transpose", [x], "encoder.channels_last", perm=[0, 2, 1])
    x = g.op(
        "Add",
        [x, g.weight("encoder.positional_embedding", w["encoder.positional_embedding"])],
        "encoder.pos",
    )
    for i in range(d.n_audio_layer):
        p = f"encoder.blocks.{i}"
        h = g.layer_norm(x, w, f"{p}.attn_ln")
        a = attention(g, h, w, f"{p}.attn", d.n_audio_head, d_head, d.n_audio_state)
        x = g.mlp(g.op("Add", [x, a], f"{p}/attn_res"), w, p)
    out = g.cast_out(g.layer_norm(x, w, "encoder.ln_post"))
    shape_out = (b, d.n_audio_ctx, d.n_audio_state)
    g.add_output(out, "features", np.float32, shape_out)
    inputs = (TensorSpec("mel", "mel", "float32", (b, d.n_mels, N_FRAMES)),)
    outputs = (TensorSpec("features", "features", "float32", shape_out),)
    return g.build("whisper_encoder", contrib=fused_attention), inputs, outputs


def build_cross_kv(model: WhisperModel, dtype: type, batch: int | None = None) -> Built:
    """features (B, S, D) -> per decoder layer cross keys (B, H, dh, S) and values (B, H, S, dh)."""
    d, w = model.dims, model.weights
    g = GraphBuilder(dtype)
    b, s = batch or "batch", d.n_audio_ctx
    dh = d.n_text_state // d.n_text_head
    cache = np.dtype(dtype).name
    feats = g.cast_in(g.add_input("features", np.float32, [b, s, d.n_audio_state]))
    outputs = []
    for i in range(d.n_text_layer):
        p = f"decoder.blocks.{i}.cross_attn"
        k_t = g.split_heads(
            g.linear(feats, w, f"{p}.key"), d.n_text_head, dh, f"{p}.k", perm=(0, 2, 3, 1)
        )
        v = g.split_heads(g.linear(feats, w, f"{p}.value"), d.n_text_head, dh, f"{p}.v")
        for role, value, shape in (
            ("cross_k", k_t, (b, d.n_text_head, dh, s)),
            ("cross_v", v, (b, d.n_text_head, s, dh)),
        ):
            g.add_output(value, f"{role}.{i}", dtype, shape)
            outputs.append(TensorSpec(f"{role}.{i}", role, cache, shape, layer=i))
    inputs = (TensorSpec("features", "features", "float32", (b, s, d.n_audio_state)),)
    return g.build("whisper_cross_kv"), inputs, tuple(outputs)


def _masks(g: GraphBuilder, tokens: str, lengths: str, cache: str) -> tuple[str, str, str]:
    """Each row's positions (B, T) (its length + 0..T-1), and the additive masks of its cache
    columns (B, 1, 1, C): -inf past the row's length, and of the new tokens (T, T): -inf where a
    token would see a later one."""
    one, zero = g.const("dec.one", 1), g.const("dec.zero", 0)
    n_new = g.op("Squeeze", [g.op("Shape", [tokens], "dec.t", start=1, end=2)], "dec.t_scalar")
    n_cache = g.op("Squeeze", [g.op("Shape", [cache], "dec.c", start=2, end=3)], "dec.c_scalar")
    steps = g.op("Range", [zero, n_new, one], "dec.steps")
    per_row = g.op("Unsqueeze", [lengths, g.const("dec.ax1", [1])], "dec.lengths2")
    positions = g.op(
        "Add",
        [per_row, g.op("Unsqueeze", [steps, g.const("dec.ax0", [0])], "dec.steps2")],
        "dec.pos_ids",
    )
    cols = g.op("Range", [zero, n_cache, one], "dec.cols")
    valid = g.op(
        "Less",
        [g.op("Unsqueeze", [cols, g.const("dec.ax0c", [0])], "dec.cols2"), per_row],
        "dec.valid",
    )
    neg_inf, zero_f = g.scalar("dec.neg_inf", -np.inf), g.scalar("dec.zero_f", 0.0)
    cache_mask = g.op(
        "Unsqueeze",
        [g.op("Where", [valid, zero_f, neg_inf], "dec.cache_mask2"), g.const("dec.ax12", [1, 2])],
        "dec.cache_mask",
    )
    later = g.op(
        "Greater",
        [
            g.op("Unsqueeze", [steps, g.const("dec.ax0s", [0])], "dec.cols_new"),
            g.op("Unsqueeze", [steps, g.const("dec.ax1s", [1])], "dec.rows_new"),
        ],
        "dec.later",
    )
    return positions, cache_mask, g.op("Where", [later, neg_inf, zero_f], "dec.causal")


def _self_attend(
    g: GraphBuilder, q: str, k_t: str, v: str, i: int, masks: tuple[str, str], hint: str
) -> str:
    """Attention over the row's cache (its first ``length`` columns; the rest masked) and the new
    tokens, without writing the cache: the caller writes the new keys and values into it. The
    cache always has ``n_text_ctx`` columns, so a row's sums never depend on its batch mates."""
    cache_mask, causal = masks
    past = g.op(
        "Add",
        [g.op("MatMul", [q, f"self_k.{i}"], f"{hint}/past_scores"), cache_mask],
        f"{hint}/past_masked",
    )
    new = g.op(
        "Add", [g.op("MatMul", [q, k_t], f"{hint}/new_scores"), causal], f"{hint}/new_masked"
    )
    weights = g.op(
        "Softmax",
        [g.op("Concat", [past, new], f"{hint}/scores", axis=-1)],
        f"{hint}/softmax",
        axis=-1,
    )
    n_cache = g.op("Shape", [f"self_k.{i}"], f"{hint}/c", start=3, end=4)
    big = g.const(f"{hint}/end", [1 << 30])
    axis = g.const(f"{hint}/axis", [-1])
    w_past = g.op("Slice", [weights, g.const(f"{hint}/zero", [0]), n_cache, axis], f"{hint}/w_past")
    w_new = g.op("Slice", [weights, n_cache, big, axis], f"{hint}/w_new")
    return g.op(
        "Add",
        [
            g.op("MatMul", [w_past, f"self_v.{i}"], f"{hint}/ctx_past"),
            g.op("MatMul", [w_new, v], f"{hint}/ctx_new"),
        ],
        f"{hint}/context",
    )


def _decoder_layer(
    g: GraphBuilder, x: str, masks: tuple[str, str], i: int, model: WhisperModel
) -> tuple[str, str, str, str]:
    """One decoder block over the cache inputs of layer ``i``; returns (x, new keys, new values,
    cross-attention scores (B, H, T, S))."""
    d, w = model.dims, model.weights
    p, dh, n = (
        f"decoder.blocks.{i}",
        model.dims.n_text_state // model.dims.n_text_head,
        d.n_text_head,
    )
    h = g.layer_norm(x, w, f"{p}.attn_ln")
    q = g.split_heads(_scaled_query(g, h, w, f"{p}.attn.query", dh), n, dh, f"{p}.attn.q")
    k_t = g.split_heads(g.linear(h, w, f"{p}.attn.key"), n, dh, f"{p}.attn.k", perm=(0, 2, 3, 1))
    v = g.split_heads(g.linear(h, w, f"{p}.attn.value"), n, dh, f"{p}.attn.v")
    a = g.merge_heads(
        _self_attend(g, q, k_t, v, i, masks, f"{p}.attn"), d.n_text_state, f"{p}.attn"
    )
    x = g.op("Add", [x, g.linear(a, w, f"{p}.attn.out")], f"{p}/attn_res")
    h = g.layer_norm(x, w, f"{p}.cross_attn_ln")
    q = g.split_heads(
        _scaled_query(g, h, w, f"{p}.cross_attn.query", dh), n, dh, f"{p}.cross_attn.q"
    )
    # backends.onnx.split cuts the graph at these names (attn_res, cross_attn.q/heads, /context)
    c, scores = g.attend_with_scores(q, f"cross_k.{i}", f"cross_v.{i}", None, f"{p}.cross_attn")
    c = g.linear(g.merge_heads(c, d.n_text_state, f"{p}.cross_attn"), w, f"{p}.cross_attn.out")
    x = g.mlp(g.op("Add", [x, c], f"{p}/cross_res"), w, p)
    return x, k_t, v, scores


def _alignment_scores(
    g: GraphBuilder, scores: dict[int, str], heads: tuple[tuple[int, int], ...]
) -> str:
    """The cross-attention scores of the alignment heads, (B, len(heads), T, S), in ``heads``
    order: one Gather per layer, then a Concat (a few kB per row and step)."""
    parts = [
        g.op(
            "Gather",
            [scores[layer], g.const(f"dec.align_heads.{n}", [head])],
            f"dec.align.{n}",
            axis=1,
        )
        for n, (layer, head) in enumerate(heads)
    ]
    joined = parts[0] if len(parts) == 1 else g.op("Concat", parts, "dec.align", axis=1)
    return g.cast_out(joined)


def _embed(g: GraphBuilder, table: np.ndarray, tokens: str) -> str:
    """The tokens' embeddings. A table the model stores in fp16 stays fp16 in an fp32 graph and
    its rows are cast after the Gather: the same values at half the memory (40 MB for tiny,
    the largest initializer of the decoder)."""
    table = np.asarray(table)
    if table.dtype != np.float16 or g.dtype != np.float32:
        embedding = g.weight("decoder.token_embedding.weight", table)
        return g.op("Gather", [embedding, tokens], "dec.embed")
    half = g.weight("decoder.token_embedding.weight", table, keep_dtype=True)
    rows = g.op("Gather", [half, tokens], "dec.embed16")
    return g.op("Cast", [rows], "dec.embed", to=onnx.TensorProto.FLOAT)


def build_decoder(model: WhisperModel, dtype: type, batch: int | None = None) -> Built:
    """tokens (B, T), each row's length (B,), positions (P,), caches of ``n_text_ctx`` columns
    -> logits (B, P, V) and the T new keys and values (the caller writes them into the caches,
    at each row's length: rows of different lengths decode side by side)."""
    d, w = model.dims, model.weights
    g = GraphBuilder(dtype)
    b, n, dh, s = batch or "batch", d.n_text_head, d.n_text_state // d.n_text_head, d.n_audio_ctx
    cdt = np.dtype(dtype).name
    tokens = g.add_input("tokens", np.int64, [b, "tokens"])
    lengths = g.add_input("lengths", np.int64, [b])
    positions = g.add_input("positions", np.int64, ["positions"])
    inputs = [
        TensorSpec("tokens", "tokens", "int64", (b, "tokens")),
        TensorSpec("lengths", "lengths", "int64", (b,)),
        TensorSpec("positions", "positions", "int64", ("positions",)),
    ]
    c = d.n_text_ctx
    shapes: dict[str, tuple[int | str, ...]] = {
        "self_k": (b, n, dh, c),
        "self_v": (b, n, c, dh),
        "cross_k": (b, n, dh, s),
        "cross_v": (b, n, s, dh),
    }
    for i in range(d.n_text_layer):
        for role, shape in shapes.items():
            g.add_input(f"{role}.{i}", dtype, shape)
            inputs.append(TensorSpec(f"{role}.{i}", role, cdt, shape, layer=i))
    pos_ids, cache_mask, causal = _masks(g, tokens, lengths, "self_v.0")
    pos_table = g.weight("decoder.positional_embedding", w["decoder.positional_embedding"])
    pos = g.op("Gather", [pos_table, pos_ids], "dec.pos")
    x = g.op("Add", [_embed(g, w["decoder.token_embedding.weight"], tokens), pos], "dec.x")
    outputs, scores = [], {}
    for i in range(d.n_text_layer):
        x, k_new, v_new, scores[i] = _decoder_layer(g, x, (cache_mask, causal), i, model)
        for role, value, shape in (
            ("new_k", k_new, (b, n, dh, "tokens")),
            ("new_v", v_new, (b, n, "tokens", dh)),
        ):
            g.add_output(value, f"{role}.{i}", dtype, shape)
            outputs.append(TensorSpec(f"{role}.{i}", role, cdt, shape, layer=i))
    picked = g.layer_norm(g.op("Gather", [x, positions], "dec.picked", axis=1), w, "decoder.ln")
    emb_t = g.weight(
        "decoder.token_embedding.weight_t", np.asarray(w["decoder.token_embedding.weight"]).T
    )
    logits = g.cast_out(g.op("MatMul", [picked, emb_t], "dec.logits"))
    g.add_output(logits, "logits", np.float32, (b, "positions", d.n_vocab))
    outputs.insert(0, TensorSpec("logits", "logits", "float32", (b, "positions", d.n_vocab)))
    heads = model.word_alignment_heads()
    qk_shape = (b, len(heads), "tokens", s)
    g.add_output(_alignment_scores(g, scores, heads), "cross_qk", np.float32, qk_shape)
    outputs.append(TensorSpec("cross_qk", "cross_qk", "float32", qk_shape))
    return g.build("whisper_decoder"), tuple(inputs), tuple(outputs)


BUILDERS: dict[str, Callable[..., Built]] = {  # (model, dtype, batch, **variant)
    "encoder": build_encoder,
    "cross_kv": build_cross_kv,
    "decoder": build_decoder,
}
