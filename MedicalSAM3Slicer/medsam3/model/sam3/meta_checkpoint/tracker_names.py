"""The tracker's rules: normalized Meta names <-> transformers' ``tracker_model.*`` / ``tracker_neck.*`` names."""

from __future__ import annotations

from .rule_table import _Rule, _attention_rules, _rules, _three_layer_mlp_rules


def _tracker_rules() -> list[_Rule]:
    t, m = "tracker.", "tracker_model."
    prompt, mask_decoder = t + "sam_prompt_encoder.", t + "sam_mask_decoder."
    two_way, memory = mask_decoder + "transformer.", t + "transformer.encoder."
    rules = [
        _Rule(
            prompt + "pe_layer.positional_encoding_gaussian_matrix",
            (
                m + "prompt_encoder.shared_embedding.positional_embedding",
                m + "shared_image_embedding.positional_embedding",
            ),
            "duplicate",
        ),
        _Rule(prompt + "point_embeddings.{n}.weight", (m + "prompt_encoder.point_embed.weight",), "stack_rows"),
        *_rules(
            prompt,
            m + "prompt_encoder.",
            [
                ("not_a_point_embed.weight", "not_a_point_embed.weight"),
                ("no_mask_embed.weight", "no_mask_embed.weight"),
                ("mask_downscaling.0.{p}", "mask_embed.conv1.{p}"),
                ("mask_downscaling.1.{p}", "mask_embed.layer_norm1.{p}"),
                ("mask_downscaling.3.{p}", "mask_embed.conv2.{p}"),
                ("mask_downscaling.4.{p}", "mask_embed.layer_norm2.{p}"),
                ("mask_downscaling.6.{p}", "mask_embed.conv3.{p}"),
            ],
        ),
        *_rules(
            mask_decoder,
            m + "mask_decoder.",
            [
                ("iou_token.weight", "iou_token.weight"),
                ("mask_tokens.weight", "mask_tokens.weight"),
                ("obj_score_token.weight", "obj_score_token.weight"),
                ("conv_s0.{p}", "conv_s0.{p}"),
                ("conv_s1.{p}", "conv_s1.{p}"),
                ("output_upscaling.0.{p}", "upscale_conv1.{p}"),
                ("output_upscaling.1.{p}", "upscale_layer_norm.{p}"),
                ("output_upscaling.3.{p}", "upscale_conv2.{p}"),
            ],
        ),
        *_three_layer_mlp_rules(
            mask_decoder + "output_hypernetworks_mlps.{i}.", m + "mask_decoder.output_hypernetworks_mlps.{i}."
        ),
        *_three_layer_mlp_rules(mask_decoder + "iou_prediction_head.", m + "mask_decoder.iou_prediction_head."),
        *_three_layer_mlp_rules(mask_decoder + "pred_obj_score_head.", m + "mask_decoder.pred_obj_score_head."),
    ]
    two_way_layer, hf_two_way = two_way + "layers.{i}.", m + "mask_decoder.transformer."
    for attention in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
        rules += _attention_rules(f"{two_way_layer}{attention}.", f"{hf_two_way}layers.{{i}}.{attention}.", fused=False)
    rules += [
        *_attention_rules(
            two_way + "final_attn_token_to_image.", hf_two_way + "final_attn_token_to_image.", fused=False
        ),
        *_rules(
            two_way,
            hf_two_way,
            [
                ("layers.{i}.mlp.lin1.{p}", "layers.{i}.mlp.proj_in.{p}"),
                ("layers.{i}.mlp.lin2.{p}", "layers.{i}.mlp.proj_out.{p}"),
                ("layers.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("layers.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("layers.{i}.norm3.{p}", "layers.{i}.layer_norm3.{p}"),
                ("layers.{i}.norm4.{p}", "layers.{i}.layer_norm4.{p}"),
                ("norm_final_attn.{p}", "layer_norm_final_attn.{p}"),
            ],
        ),
        *_attention_rules(memory + "layers.{i}.self_attn.", m + "memory_attention.layers.{i}.self_attn.", fused=False),
        *_attention_rules(
            memory + "layers.{i}.cross_attn_image.", m + "memory_attention.layers.{i}.cross_attn_image.", fused=False
        ),
        *_rules(
            memory,
            m + "memory_attention.",
            [
                ("layers.{i}.linear1.{p}", "layers.{i}.linear1.{p}"),
                ("layers.{i}.linear2.{p}", "layers.{i}.linear2.{p}"),
                ("layers.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("layers.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("layers.{i}.norm3.{p}", "layers.{i}.layer_norm3.{p}"),
                ("norm.{p}", "layer_norm.{p}"),
            ],
        ),
    ]
    # Memory mask downsampler: 4 x (conv, layer norm, GELU) then a 1x1 conv, in one Meta Sequential.
    downsampler = []
    for stage in range(4):
        downsampler += [(f"encoder.{3 * stage}.{{p}}", f"layers.{stage}.conv.{{p}}")]
        downsampler += [(f"encoder.{3 * stage + 1}.{{p}}", f"layers.{stage}.layer_norm.{{p}}")]
    downsampler += [("encoder.12.{p}", "final_conv.{p}")]
    rules += [
        *_rules(t + "maskmem_backbone.mask_downsampler.", m + "memory_encoder.mask_downsampler.", downsampler),
        *_rules(
            t + "maskmem_backbone.",
            m + "memory_encoder.",
            [
                ("pix_feat_proj.{p}", "feature_projection.{p}"),
                ("out_proj.{p}", "projection.{p}"),
                ("fuser.layers.{i}.dwconv.{p}", "memory_fuser.layers.{i}.depthwise_conv.{p}"),
                ("fuser.layers.{i}.norm.{p}", "memory_fuser.layers.{i}.layer_norm.{p}"),
                ("fuser.layers.{i}.pwconv1.{p}", "memory_fuser.layers.{i}.pointwise_conv1.{p}"),
                ("fuser.layers.{i}.pwconv2.{p}", "memory_fuser.layers.{i}.pointwise_conv2.{p}"),
                ("fuser.layers.{i}.gamma", "memory_fuser.layers.{i}.scale"),
            ],
        ),
        *_rules(
            t,
            m,
            [
                ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
                ("no_mem_embed", "no_memory_embedding"),
                ("no_mem_pos_enc", "no_memory_positional_encoding"),
                ("no_obj_ptr", "no_object_pointer"),
                ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
                ("obj_ptr_tpos_proj.{p}", "temporal_positional_encoding_projection_layer.{p}"),
                ("mask_downsample.{p}", "mask_downsample.{p}"),
            ],
        ),
        *_three_layer_mlp_rules(t + "obj_ptr_proj.", m + "object_pointer_proj."),
    ]
    return rules
