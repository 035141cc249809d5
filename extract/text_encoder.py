"""The frozen text encoder: per selected layer, the first-token vector and the states of the real tokens."""

from __future__ import annotations

import inspect

import torch

from spp_scl.extract.fingerprint import sha256_json, sha256_state_dict


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
    ):
        from transformers import AutoModel, AutoTokenizer

        self.name = name_or_path
        # A model folder or id never runs its own code here (trust_remote_code=False): predict loads the text
        # encoder a cache names, and a data file must not decide what code runs.
        self.tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=False, local_files_only=local_files_only
        )
        torch.manual_seed(0)  # weights the checkpoint lacks (an unused pooler, say) are then the same each run
        self.model = AutoModel.from_pretrained(name_or_path, trust_remote_code=False, local_files_only=local_files_only)
        self.model = self.model.eval().to(device)
        self.device = torch.device(device)
        num_layers = self.model.config.num_hidden_layers
        self.layers = resolve_layers(layers, num_layers)
        self.max_length = max_length
        # Only the inputs this model's forward takes: MPNet, RoBERTa, DistilBERT... take no token_type_ids.
        self.input_names = set(inspect.signature(self.model.forward).parameters) & {
            "input_ids",
            "attention_mask",
            "token_type_ids",
        }
        self.dim = self.model.config.hidden_size

    def describe(self) -> dict:
        return {
            "model": self.name,
            "class": type(self.model).__name__,
            "weights_sha256": sha256_state_dict(self.model),
            "config_sha256": sha256_json(self.model.config.to_dict()),
            "tokenizer_sha256": _tokenizer_sha256(self.tokenizer),
            "layers": self.layers,
            "max_length": self.max_length,
        }

    def token_lengths(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    @torch.no_grad()
    def encode(
        self, texts: list[str], dropout_streams: list[torch.Generator] | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each text: first-token vectors [K, D] and real-token states [K, L, D] (float32, on the CPU).
        With `dropout_streams` (one generator per text), the model runs in train mode with each text's dropout
        masks drawn from its own stream (extract/record_dropout.py): a stochastic view of each text."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        inputs = {name: tensor.to(self.device) for name, tensor in batch.items() if name in self.input_names}
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
            outputs.append((tokens[:, 0].clone(), tokens.clone()))
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
