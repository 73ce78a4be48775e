"""The detector's rules: normalized Meta names <-> transformers' ``detector_model.*`` names."""

from __future__ import annotations

from .rule_table import _Rule, _attention_rules, _fpn_neck_rules, _rules


def _detector_rules() -> list[_Rule]:
    d = "detector_model."
    trunk, vit = "backbone.vision_backbone.trunk.", d + "vision_encoder.backbone."
    text, clip = "backbone.language_backbone.encoder.", d + "text_encoder."
    geometry = "geometry_encoder."
    rules = [
        _Rule(trunk + "pos_embed", (vit + "embeddings.position_embeddings",), "drop_cls_token"),
        *_rules(
            trunk,
            vit,
            [
                ("patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"),
                ("ln_pre.{p}", "layer_norm.{p}"),
                ("blocks.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("blocks.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("blocks.{i}.attn.proj.{p}", "layers.{i}.attention.o_proj.{p}"),
                ("blocks.{i}.mlp.fc1.{p}", "layers.{i}.mlp.fc1.{p}"),
                ("blocks.{i}.mlp.fc2.{p}", "layers.{i}.mlp.fc2.{p}"),
            ],
        ),
        _Rule(trunk + "blocks.{i}.attn.qkv.{p}", (vit + "layers.{i}.attention.{qkv}_proj.{p}",), "split_qkv"),
        *_fpn_neck_rules("backbone.vision_backbone.convs.", d + "vision_encoder.neck.fpn_layers."),
        *_fpn_neck_rules("backbone.vision_backbone.sam2_convs.", "tracker_neck.fpn_layers."),
        *_rules(
            text,
            clip,
            [
                ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
                ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
                ("ln_final.{p}", "text_model.final_layer_norm.{p}"),
                ("transformer.resblocks.{i}.ln_1.{p}", "text_model.encoder.layers.{i}.layer_norm1.{p}"),
                ("transformer.resblocks.{i}.ln_2.{p}", "text_model.encoder.layers.{i}.layer_norm2.{p}"),
                ("transformer.resblocks.{i}.mlp.c_fc.{p}", "text_model.encoder.layers.{i}.mlp.fc1.{p}"),
                ("transformer.resblocks.{i}.mlp.c_proj.{p}", "text_model.encoder.layers.{i}.mlp.fc2.{p}"),
                ("transformer.resblocks.{i}.attn.out_proj.{p}", "text_model.encoder.layers.{i}.self_attn.out_proj.{p}"),
            ],
        ),
        _Rule(
            text + "transformer.resblocks.{i}.attn.in_proj_{p}",
            (clip + "text_model.encoder.layers.{i}.self_attn.{qkv}_proj.{p}",),
            "split_qkv",
        ),
        _Rule(text + "text_projection", (clip + "text_projection.weight",), "transpose"),
        _Rule("backbone.language_backbone.resizer.{p}", (d + "text_projection.{p}",)),
        *_attention_rules(geometry + "encode.{i}.self_attn.", d + geometry + "layers.{i}.self_attn.", fused=True),
        *_attention_rules(
            geometry + "encode.{i}.cross_attn_image.", d + geometry + "layers.{i}.cross_attn.", fused=True
        ),
        *_rules(
            geometry,
            d + geometry,
            [
                ("encode.{i}.linear1.{p}", "layers.{i}.mlp.fc1.{p}"),
                ("encode.{i}.linear2.{p}", "layers.{i}.mlp.fc2.{p}"),
                ("encode.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("encode.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("encode.{i}.norm3.{p}", "layers.{i}.layer_norm3.{p}"),
                ("img_pre_norm.{p}", "vision_layer_norm.{p}"),
                ("norm.{p}", "prompt_layer_norm.{p}"),
                ("encode_norm.{p}", "output_layer_norm.{p}"),
                ("boxes_direct_project.{p}", "boxes_direct_project.{p}"),
                ("boxes_pool_project.{p}", "boxes_pool_project.{p}"),
                ("boxes_pos_enc_project.{p}", "boxes_pos_enc_project.{p}"),
                ("cls_embed.weight", "cls_embed.weight"),
                ("final_proj.{p}", "final_proj.{p}"),
                ("label_embed.weight", "label_embed.weight"),
            ],
        ),
    ]
    encoder, detr_encoder = "transformer.encoder.layers.{i}.", d + "detr_encoder.layers.{i}."
    rules += [
        *_attention_rules(encoder + "self_attn.", detr_encoder + "self_attn.", fused=True),
        *_attention_rules(encoder + "cross_attn_image.", detr_encoder + "cross_attn.", fused=True),
        *_rules(
            encoder,
            detr_encoder,
            [
                ("linear1.{p}", "mlp.fc1.{p}"),
                ("linear2.{p}", "mlp.fc2.{p}"),
                ("norm1.{p}", "layer_norm1.{p}"),
                ("norm2.{p}", "layer_norm2.{p}"),
                ("norm3.{p}", "layer_norm3.{p}"),
            ],
        ),
    ]
    decoder, detr_decoder = "transformer.decoder.", d + "detr_decoder."
    layer, detr_layer = decoder + "layers.{i}.", detr_decoder + "layers.{i}."
    rules += [
        *_rules(
            decoder,
            detr_decoder,
            [
                ("query_embed.weight", "query_embed.weight"),
                ("reference_points.weight", "reference_points.weight"),
                ("presence_token.weight", "presence_token.weight"),
                ("presence_token_head.layers.0.{p}", "presence_head.layer1.{p}"),
                ("presence_token_head.layers.1.{p}", "presence_head.layer2.{p}"),
                ("presence_token_head.layers.2.{p}", "presence_head.layer3.{p}"),
                ("presence_token_out_norm.{p}", "presence_layer_norm.{p}"),
                ("norm.{p}", "output_layer_norm.{p}"),
                ("bbox_embed.layers.0.{p}", "box_head.layer1.{p}"),
                ("bbox_embed.layers.1.{p}", "box_head.layer2.{p}"),
                ("bbox_embed.layers.2.{p}", "box_head.layer3.{p}"),
                ("ref_point_head.layers.0.{p}", "ref_point_head.layer1.{p}"),
                ("ref_point_head.layers.1.{p}", "ref_point_head.layer2.{p}"),
                ("boxRPB_embed_x.layers.0.{p}", "box_rpb_embed_x.layer1.{p}"),
                ("boxRPB_embed_x.layers.1.{p}", "box_rpb_embed_x.layer2.{p}"),
                ("boxRPB_embed_y.layers.0.{p}", "box_rpb_embed_y.layer1.{p}"),
                ("boxRPB_embed_y.layers.1.{p}", "box_rpb_embed_y.layer2.{p}"),
            ],
        ),
        *_attention_rules(layer + "self_attn.", detr_layer + "self_attn.", fused=True),
        *_attention_rules(layer + "ca_text.", detr_layer + "text_cross_attn.", fused=True),
        *_attention_rules(layer + "cross_attn.", detr_layer + "vision_cross_attn.", fused=True),
        *_rules(
            layer,
            detr_layer,
            [
                ("linear1.{p}", "mlp.fc1.{p}"),
                ("linear2.{p}", "mlp.fc2.{p}"),
                ("norm1.{p}", "vision_cross_attn_layer_norm.{p}"),
                ("catext_norm.{p}", "text_cross_attn_layer_norm.{p}"),
                ("norm2.{p}", "self_attn_layer_norm.{p}"),
                ("norm3.{p}", "mlp_layer_norm.{p}"),
            ],
        ),
        *_rules(
            "dot_prod_scoring.",
            d + "dot_product_scoring.",
            [
                ("prompt_mlp.layers.0.{p}", "text_mlp.layer1.{p}"),
                ("prompt_mlp.layers.1.{p}", "text_mlp.layer2.{p}"),
                ("prompt_mlp.out_norm.{p}", "text_mlp_out_norm.{p}"),
                ("prompt_proj.{p}", "text_proj.{p}"),
                ("hs_proj.{p}", "query_proj.{p}"),
            ],
        ),
        *_rules(
            "segmentation_head.",
            d + "mask_decoder.",
            [
                ("pixel_decoder.conv_layers.{i}.{p}", "pixel_decoder.conv_layers.{i}.{p}"),
                ("pixel_decoder.norms.{i}.{p}", "pixel_decoder.norms.{i}.{p}"),
                ("mask_predictor.mask_embed.layers.{i}.{p}", "mask_embedder.layers.{i}.{p}"),
                ("instance_seg_head.{p}", "instance_projection.{p}"),
                ("semantic_seg_head.{p}", "semantic_projection.{p}"),
                ("cross_attn_norm.{p}", "prompt_cross_attn_norm.{p}"),
            ],
        ),
        *_attention_rules("segmentation_head.cross_attend_prompt.", d + "mask_decoder.prompt_cross_attn.", fused=True),
    ]
    return rules
