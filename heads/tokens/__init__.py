"""Token-level building blocks shared by the CLMLF- and MDSE-style heads: cached text states and image
maps turned into token sequences of one width, attention blocks over them, and masked pooling."""

from spp_scl.heads.tokens.attention_block import AttentionBlock
from spp_scl.heads.tokens.attention_pooling import AttentionPooling
from spp_scl.heads.tokens.image_tokens import ImageTokens
from spp_scl.heads.tokens.masked_mean import masked_mean
from spp_scl.heads.tokens.self_attention_encoder import SelfAttentionEncoder
from spp_scl.heads.tokens.text_tokens import TextTokens
from spp_scl.heads.tokens.token_inputs import token_inputs

__all__ = [
    "AttentionBlock",
    "AttentionPooling",
    "ImageTokens",
    "SelfAttentionEncoder",
    "TextTokens",
    "masked_mean",
    "token_inputs",
]
