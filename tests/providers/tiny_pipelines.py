"""Tiny Flux and Qwen-Image-Edit pipelines with random weights, built offline.

Nothing comes from a hub: the configs are small versions of the real ones, and the tokenizers
are byte-level BPE tokenizers trained here on a few sentences (with the special tokens each
pipeline's prompt template needs). ``save_pretrained`` writes them in the layout
``from_pretrained(path, local_files_only=True)`` loads, which is what the adapter does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

CORPUS = [
    "a full body character on a plain white background, stylized illustration, clean lines",
    "Describe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image.",
    "Generate a new image that meets the user's requirements while maintaining consistency "
    "with the original input where appropriate. Picture 1: the fox raises both arms, smiling.",
    "system user assistant 0123456789 !?.,:;'\"()[]{}<>|/_-+=*&^%$#@~`",
]
QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


@contextmanager
def qwen_processor_without_video() -> Iterator[None]:
    """Let ``Qwen2VLProcessor`` be built, saved and loaded without its video processor.

    transformers 5 makes the video processor a required part of the processor, and it needs
    torchvision, which this CPU environment lacks (the only torchvision wheel available to it is
    built for CUDA torch and breaks ``import transformers``). Images never touch the video
    processor, so for tests the processor is declared to consist of the image processor and the
    tokenizer. Where torchvision is installed (GPU machines) this does nothing.
    """
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        yield
        return
    from transformers import Qwen2VLProcessor

    original = Qwen2VLProcessor.__dict__.get("get_attributes")
    Qwen2VLProcessor.get_attributes = classmethod(  # type: ignore[method-assign,assignment]
        lambda cls: ["image_processor", "tokenizer"]
    )
    try:
        yield
    finally:
        if original is None:
            del Qwen2VLProcessor.get_attributes
        else:
            Qwen2VLProcessor.get_attributes = original  # type: ignore[method-assign]


def bpe_tokenizer(special: list[str], vocab_size: int = 400) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tokenizer


def _fast(special: list[str], **kwargs: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=bpe_tokenizer(special), **kwargs)


def build_tiny_flux(path: Path) -> Path:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    clip_tokenizer = _fast(
        ["<|pad|>", "<|startoftext|>", "<|endoftext|>"],
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=77,
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(clip_tokenizer),
            projection_dim=32,
            max_position_embeddings=77,
        )
    )
    t5_tokenizer = _fast(
        ["<pad>", "</s>", "<unk>"],
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
        )
    )
    vae = AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=clip,
        tokenizer=clip_tokenizer,
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_qwen_edit(path: Path, *, plus: bool = True) -> Path:
    import diffusers
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )

    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    z_dim = 4
    vae = AutoencoderKLQwenImage(
        base_dim=z_dim * 2,
        z_dim=z_dim,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=bpe_tokenizer(QWEN_SPECIAL),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        hidden_size=16,
        vocab_size=len(tokenizer),
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer)
    cls = (
        diffusers.QwenImageEditPlusPipeline
        if plus and hasattr(diffusers, "QwenImageEditPlusPipeline")
        else diffusers.QwenImageEditPipeline
    )
    pipe = cls(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
    pipe.save_pretrained(path)
    return path
