"""The frozen text encoder: per selected layer, the sentence-token vector and the states of the real tokens.

Three kinds of transformers model give text features, each loaded with trust_remote_code=False:
- an encoder (BERT, RoBERTa, MPNet...): its sentence token is the first one ([CLS], <s>);
- the text tower of a two-tower model (CLIP, SigLIP; one checkpoint may also serve as the image encoder): the end
  token, which CLIP's own pooling reads (the first is a constant start token in a causal tower);
- a decoder (GPT-2, Llama, Qwen...): the last real token, the only one that has read the whole text, whether the
  tokenizer pads on the left or the right.
`--sentence-token first|last|eos|mean` overrides the choice; it is recorded in the fingerprint. A cache written
before the choice existed holds the first token (spp_scl.extract.fingerprint reads it so).
"""

from __future__ import annotations

import inspect

import torch

from spp_scl.extract.fingerprint import sha256_json, sha256_state_dict

SENTENCE_TOKENS = ("first", "last", "eos", "mean")


def is_decoder_type(model_type: str) -> bool:
    """A causal language model with no masked-LM form: each token reads only those before it."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


# A two-tower model's text tower saved on its own (Stable Diffusion's CLIP text encoder, say): it pools like the tower.
TEXT_TOWER_TYPES = ("clip_text_model", "siglip_text_model", "siglip2_text_model", "chinese_clip_text_model")


def default_sentence_token(model_type: str, two_tower: bool) -> str:
    if two_tower or model_type in TEXT_TOWER_TYPES:
        return "eos"
    return "last" if is_decoder_type(model_type) else "first"


def sentence_vectors(states: torch.Tensor, ids: torch.Tensor, choice: str, eos_id: int | None) -> torch.Tensor:
    """[K, D] from one text's real-token states [K, L, D] and ids [L]. `eos`: the first end-of-text token (where
    CLIP pools), or the last real token when the text has none."""
    if choice == "first":
        return states[:, 0]
    if choice == "last":
        return states[:, -1]
    if choice == "mean":
        return states.mean(dim=1)
    found = (ids == eos_id).nonzero() if eos_id is not None else ids.new_zeros(0, 1)
    return states[:, int(found[0, 0]) if len(found) else -1]


def resolve_layers(layers: list[int], num_layers: int) -> list[int]:
    """Layer numbers as in BERT's papers (1..num_layers; 0 is the embeddings); negative ones count from the end."""
    if not layers:
        raise ValueError("--text-layers names no layer")
    resolved = []
    for layer in layers:
        number = num_layers + 1 + layer if layer < 0 else layer
        if not 0 <= number <= num_layers:
            raise ValueError(f"--text-layers {layer}: the text encoder has layers 1..{num_layers} (0 = embeddings)")
        resolved.append(number)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"--text-layers names a layer twice: {resolved}")
    return resolved


def _tokenizer_sha256(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return sha256_json([type(tokenizer).__name__, backend.to_str()])
    return sha256_json([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items()), tokenizer.special_tokens_map])


class TextEncoder:
    def __init__(
        self,
        name_or_path: str,
        layers: list[int],
        max_length: int,
        device: torch.device | str = "cpu",
        local_files_only: bool = False,  # offline with a cached hub id (spp_scl.extract.encoder_source)
        sentence_token: str = "auto",  # auto: by architecture (see the module's docstring)
    ):
        from transformers import AutoModel, AutoTokenizer

        self.name = name_or_path
        # A model folder or id never runs its own code here (trust_remote_code=False): predict loads the text
        # encoder a cache names, and a data file must not decide what code runs.
        self.tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=False, local_files_only=local_files_only
        )
        torch.manual_seed(0)  # weights the checkpoint lacks (an unused pooler, say) are then the same each run
        model = AutoModel.from_pretrained(name_or_path, trust_remote_code=False, local_files_only=local_files_only)
        self.two_tower = hasattr(model, "text_model") and hasattr(model, "vision_model")
        self.model_type = model.config.model_type
        self.model = (model.text_model if self.two_tower else model).eval().to(device)
        if self.two_tower:  # the tower's config records the checkpoint it came from, as a whole model's does
            self.model.config._name_or_path = model.config._name_or_path
        self.device = torch.device(device)
        config = self.model.config
        self.layers = resolve_layers(layers, config.num_hidden_layers)
        if sentence_token == "auto":
            sentence_token = default_sentence_token(self.model_type, self.two_tower)
        if sentence_token not in SENTENCE_TOKENS:
            raise ValueError(f"--sentence-token {sentence_token}: choose auto or one of {', '.join(SENTENCE_TOKENS)}")
        self.sentence_token = sentence_token
        if self.tokenizer.pad_token is None:  # decoders (GPT-2, Llama) have none; padding is masked out anyway
            if self.tokenizer.eos_token is None:
                raise ValueError(f"text encoder {name_or_path}: its tokenizer has neither a padding nor an end token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # A text tower with fewer positions than asked for (CLIP: 77, SigLIP: 64) reads at most that many tokens.
        positions = getattr(config, "max_position_embeddings", None)
        tower = self.two_tower or self.model_type in TEXT_TOWER_TYPES
        self.max_length = min(max_length, positions) if tower and isinstance(positions, int) else max_length
        # Only the inputs this model's forward takes: MPNet, RoBERTa, DistilBERT... take no token_type_ids.
        accepted = set(inspect.signature(self.model.forward).parameters)
        self.input_names = accepted & {"input_ids", "attention_mask", "token_type_ids"}
        # Left padding (decoder tokenizers) shifts the real tokens' positions by the padding unless they are given:
        # a text's features must not depend on the longest text of its batch.
        self.positions_from_mask = self.tokenizer.padding_side == "left" and "position_ids" in accepted
        self.dim = config.hidden_size
        self.eos_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token is not None else None

    def describe(self) -> dict:
        description = {
            "model": self.name,
            "class": type(self.model).__name__,
            "weights_sha256": sha256_state_dict(self.model),
            "config_sha256": sha256_json(self.model.config.to_dict()),
            "tokenizer_sha256": _tokenizer_sha256(self.tokenizer),
            "layers": self.layers,
            "max_length": self.max_length,
            "sentence_token": self.sentence_token,
        }
        if self.two_tower:  # the text tower of a two-tower checkpoint: the class above is the tower's
            description["tower_of"] = self.model_type
        return description

    def token_lengths(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    @torch.no_grad()
    def encode(
        self, texts: list[str], dropout_streams: list[torch.Generator] | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each text: sentence-token vectors [K, D] and real-token states [K, L, D] (float32, on the CPU).
        With `dropout_streams` (one generator per text), the model runs in train mode with each text's dropout
        masks drawn from its own stream (extract/record_dropout.py): a stochastic view of each text."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        inputs = {name: tensor.to(self.device) for name, tensor in batch.items() if name in self.input_names}
        if self.positions_from_mask:
            inputs["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0).to(self.device)
        if dropout_streams is None:
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states
        else:
            hidden = self._forward_with_record_dropout(inputs, batch["attention_mask"], dropout_streams)
        states = torch.stack([hidden[layer] for layer in self.layers], dim=1).float().cpu()  # [B, K, L, D]
        mask = batch["attention_mask"].bool()
        outputs = []
        for row in range(len(texts)):
            real = mask[row].nonzero().squeeze(1)  # works for left and right padding alike
            tokens = states[row][:, real]
            vector = sentence_vectors(tokens, batch["input_ids"][row][real], self.sentence_token, self.eos_id)
            outputs.append((vector.clone(), tokens.clone()))
        return outputs

    def _forward_with_record_dropout(self, inputs: dict, attention_mask: torch.Tensor, streams) -> tuple:
        from spp_scl.extract.record_dropout import RecordDropout, check_no_global_draws, global_random_state

        before = global_random_state()
        self.model.train()
        try:
            with RecordDropout(streams, attention_mask):
                hidden = self.model(**inputs, output_hidden_states=True).hidden_states
        finally:
            self.model.eval()
        check_no_global_draws(before, self.name)
        return hidden
